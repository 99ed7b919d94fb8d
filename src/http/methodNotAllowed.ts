/**
 * `405 method_not_allowed` with `Allow` for a known path asked with a method it does not answer
 * (a path nothing answers stays `404 not_found`).
 *
 * @module
 */
import type { Env, Hono } from 'hono'
import { inspectRoutes } from 'hono/dev'
import { sendError } from './errors.ts'

/**
 * Adds, after every route of `app` (call it last), a handler per known path that answers any
 * other method with 405. HEAD is allowed wherever GET is (Hono answers HEAD with the GET handler).
 *
 * @example
 * app.get('/healthz', (c) => c.json({ status: 'ok' }))
 * answerMethodNotAllowed(app) // POST /healthz → 405, Allow: GET, HEAD
 */
export function answerMethodNotAllowed<E extends Env>(app: Hono<E>): void {
  const allowedByPath = new Map<string, Set<string>>()
  for (const route of inspectRoutes(app)) {
    if (route.isMiddleware || route.method === 'ALL') continue
    let allowed = allowedByPath.get(route.path)
    if (allowed === undefined) {
      allowed = new Set()
      allowedByPath.set(route.path, allowed)
    }
    allowed.add(route.method)
    if (route.method === 'GET') allowed.add('HEAD')
  }
  for (const [path, allowed] of allowedByPath) {
    const allow = [...allowed].join(', ')
    app.all(path, (c) =>
      sendError(
        c,
        405,
        'method_not_allowed',
        `${c.req.method} is not allowed on ${c.req.path}; use ${allow}.`,
        { Allow: allow }
      )
    )
  }
}
