/**
 * Request bodies: read as text (the size limit is enforced before) and parsed as JSON whatever the
 * `Content-Type` says; an empty body counts as `{}` so that the seed's frontend, which sends
 * `Content-Type: application/json` and no body, keeps working. The route's zod schema then
 * validates the value (`@hono/zod-openapi`, errors answered by `validationHook`).
 *
 * @module
 */
import type { MiddlewareHandler } from 'hono'
import { ApiError } from './errors.ts'

/**
 * Route middleware for a route with a JSON body: parses it the project's way (400 `invalid_body`
 * for malformed JSON) and hands the value to the route's validator, which reads only a body
 * declared `application/json`.
 *
 * @example
 * createRoute({ method: 'post', path: '/x', middleware: [jsonBody], request: { body: … }, … })
 */
export const jsonBody: MiddlewareHandler = async function jsonBody(c, next) {
  let text = await c.req.text()
  if (text.trim() === '') text = '{}'
  try {
    JSON.parse(text)
  } catch {
    throw new ApiError(400, 'invalid_body', 'The request body is not valid JSON.')
  }
  // The route's validator reads only a body declared JSON: hand it the same text, declared so
  // (Hono's body-limit middleware replaces the request the same way).
  const headers = new Headers(c.req.raw.headers)
  headers.set('Content-Type', 'application/json')
  headers.delete('Content-Length')
  c.req.raw = new Request(c.req.raw.url, { method: c.req.raw.method, headers, body: text })
  c.req.bodyCache = {}
  await next()
}
