/**
 * The OpenAPI document (`/openapi.json`): valid OpenAPI 3.1, every route the app serves is in it,
 * and the answer checker of the edge tests (test/support/openapi.ts) refuses what it does not
 * describe.
 */
import { Validator } from '@seriousme/openapi-schema-validator'
import { inspectRoutes } from 'hono/dev'
import { afterEach, describe, expect, it } from 'vitest'
import { createApp } from '../../src/http/app.ts'
import { createTokenVerifier } from '../../src/auth/verifier.ts'
import { createMetrics } from '../../src/metrics.ts'
import { createQrImageRenderer } from '../../src/qr/renderer.ts'
import { api, closeAll, startTestServer, tokenFor, type Json } from '../support/edge.ts'
import { responseChecker, type OpenApiDocument } from '../support/openapi.ts'

afterEach(() => closeAll())

async function documentOf(url: string): Promise<OpenApiDocument> {
  const response = await fetch(`${url}/openapi.json`)
  expect(response.status).toBe(200)
  expect(response.headers.get('content-type')).toMatch(/^application\/json/)
  return (await response.json()) as OpenApiDocument
}

/** `/api/campaigns/:campaignId/qr-code` as the document writes it. */
const asTemplate = (path: string) => path.replace(/:(\w+)/g, '{$1}')

describe('/openapi.json', () => {
  it('is a valid OpenAPI 3.1 document with bearer authentication on every /api operation', async () => {
    const server = await startTestServer()
    const document = await documentOf(server.url)
    const validator = new Validator()
    const result = await validator.validate(
      document as unknown as Parameters<Validator['validate']>[0]
    )
    expect(result.errors ?? []).toEqual([])
    expect(result.valid).toBe(true)
    expect(validator.version).toBe('3.1')

    const json = document as Json
    expect(json.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' })
    for (const [path, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations as Record<string, Json>)) {
        const secured = (operation.security ?? []).some((entry: Json) => 'bearer' in entry)
        expect({ path, method, secured }).toEqual({
          path,
          method,
          secured: path.startsWith('/api'),
        })
        // Every /api operation documents its authentication failure.
        if (path.startsWith('/api')) expect(Object.keys(operation.responses)).toContain('401')
      }
    }
  })

  it('describes every route the app serves (the pages and the document itself aside)', async () => {
    const server = await startTestServer()
    const document = await documentOf(server.url)
    // The service's own app: the same routes as the server's, simulator and pages included.
    const app = createApp({
      sessions: server.sessions,
      verifier: createTokenVerifier(server.config.jwt),
      qrImages: createQrImageRenderer(),
      metrics: createMetrics({ sessions: server.sessions, processMetrics: false }),
      simulator: server.simulator,
      webhooks: server.webhooks!,
    })
    const served = inspectRoutes(app)
      .filter((route) => !route.isMiddleware && route.method !== 'ALL')
      .map((route) => `${route.method} ${asTemplate(route.path)}`)
    const documented = Object.entries(document.paths).flatMap(([path, operations]) =>
      Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`)
    )
    expect(served.filter((route) => route !== 'GET /openapi.json').sort()).toEqual(
      [...documented].sort()
    )
    expect(served).toContain('POST /api/simulator/campaigns/{campaignId}/scan')
    expect(served).toContain('PUT /api/campaigns/{campaignId}/webhook')
    expect(served.length).toBeGreaterThanOrEqual(9)
  })

  it('answers the same document to HEAD and is no API route: no token needed', async () => {
    const server = await startTestServer()
    expect((await fetch(`${server.url}/openapi.json`, { method: 'HEAD' })).status).toBe(200)
    const post = await api(server, 'POST', '/openapi.json')
    expect(post.status).toBe(405)
    expect(post.json.error.code).toBe('method_not_allowed')
  })
})

describe('the answer check of the edge tests', () => {
  it('passes the real answers and refuses a change of shape the document does not follow', async () => {
    const server = await startTestServer()
    const check = responseChecker(await documentOf(server.url))
    const token = await tokenFor('alice')
    const started = await api(server, 'POST', '/api/campaigns/shape/qr-code', { token })
    expect(started.status).toBe(202)
    const { json } = await api(server, 'GET', '/api/campaigns/shape/connection', { token })
    const answer = (body: unknown, status = 200) => ({
      method: 'GET',
      path: '/api/campaigns/shape/connection',
      status,
      contentType: 'application/json',
      body,
    })
    expect(() => check(answer(json))).not.toThrow()

    const { status: _status, ...withoutStatus } = json
    expect(() => check(answer(withoutStatus))).toThrow(/must have required property 'status'/)
    expect(() => check(answer({ ...json, owner: 'alice' }))).toThrow(/additional properties/)
    expect(() => check(answer({ ...json, status: 'linked' }))).toThrow(/allowed values/)
    expect(() => check(answer({ ...json, expiresAt: 'tomorrow' }))).toThrow(/date-time/)
    expect(() => check(answer({ ...json, history: [{ status: 'idle' }] }))).toThrow(/'at'/)
    // A status the operation does not document, and an error of another shape.
    expect(() => check(answer({ error: { code: 'gone', message: 'x' } }, 410))).toThrow(
      /status not in the document/
    )
    expect(() => check(answer({ error: 'forbidden' }, 403))).toThrow(/does not match/)
    // An undocumented route that answers 200 JSON.
    expect(() => check({ ...answer({}), path: '/api/campaigns/shape/history' })).toThrow(
      /not in the document/
    )
  })
})
