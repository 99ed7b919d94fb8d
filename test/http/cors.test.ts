/**
 * A frontend on its own origin: CORS for `/api` (`CORS_ORIGINS`) and the origin allowlist of the
 * WebSocket upgrades (`WS_ALLOWED_ORIGINS`), checked at the HTTP level with a real server.
 * test/web/cors.test.ts checks the same from a real browser.
 */
import { afterEach, describe, expect, it } from 'vitest'
import {
  api,
  closeAll,
  openSocket,
  startTestServer,
  tokenFor,
  UpgradeRefused,
  type TestServer,
} from '../support/edge.ts'

const APP = 'http://app.example.test:5173'
const OTHER = 'https://evil.example.test'

afterEach(closeAll)

function preflight(server: TestServer, path: string, origin: string, method = 'POST') {
  return fetch(`${server.url}${path}`, {
    method: 'OPTIONS',
    headers: {
      Origin: origin,
      'Access-Control-Request-Method': method,
      'Access-Control-Request-Headers': 'authorization,content-type',
    },
  })
}

describe('CORS_ORIGINS: /api from a browser on another origin', () => {
  it('answers a preflight from a listed origin with the methods, headers and max age the API uses', async () => {
    const server = await startTestServer({ CORS_ORIGINS: `${APP}, https://admin.example.test` })
    const response = await preflight(server, '/api/campaigns/spring-sale/qr-code', APP)
    expect(response.status).toBe(204)
    expect(response.headers.get('access-control-allow-origin')).toBe(APP)
    const methods = response.headers.get('access-control-allow-methods')?.split(',')
    expect(methods).toEqual(expect.arrayContaining(['GET', 'POST', 'PUT', 'DELETE']))
    const headers = response.headers.get('access-control-allow-headers')?.toLowerCase().split(',')
    expect(headers).toEqual(expect.arrayContaining(['authorization', 'content-type']))
    expect(response.headers.get('access-control-max-age')).toBe('600')
    expect(response.headers.get('access-control-allow-credentials')).toBeNull()
    expect(response.headers.get('vary')).toMatch(/Origin/)
  })

  it('gives an unlisted origin no Access-Control-Allow-Origin, so its browser blocks the call', async () => {
    const server = await startTestServer({ CORS_ORIGINS: APP })
    const response = await preflight(server, '/api/campaigns/spring-sale/qr-code', OTHER)
    expect(response.headers.get('access-control-allow-origin')).toBeNull()
    const token = await tokenFor('alice')
    const answer = await api(server, 'GET', '/api/campaigns/spring-sale/connection', {
      token,
      headers: { Origin: OTHER },
    })
    expect(answer.headers.get('access-control-allow-origin')).toBeNull()
  })

  it('carries the headers on successes and on errors, so the frontend can read the error body', async () => {
    const server = await startTestServer({ CORS_ORIGINS: APP })
    const token = await tokenFor('alice')
    const started = await api(server, 'POST', '/api/campaigns/spring-sale/qr-code', {
      token,
      headers: { Origin: APP },
    })
    expect(started.status).toBe(202)
    expect(started.headers.get('access-control-allow-origin')).toBe(APP)

    const unauthorized = await api(server, 'GET', '/api/campaigns/spring-sale/connection', {
      headers: { Origin: APP },
    })
    expect(unauthorized.status).toBe(401)
    expect(unauthorized.headers.get('access-control-allow-origin')).toBe(APP)
    expect(unauthorized.headers.get('access-control-expose-headers')).toMatch(/WWW-Authenticate/i)
    expect(unauthorized.json.error.code).toBe('unauthorized')

    const forbidden = await api(server, 'POST', '/api/campaigns/spring-sale/qr-code', {
      token: await tokenFor('bob'),
      headers: { Origin: APP },
    })
    expect(forbidden.status).toBe(403)
    expect(forbidden.headers.get('access-control-allow-origin')).toBe(APP)

    const badId = await api(server, 'GET', '/api/campaigns/not%20valid/connection', {
      token,
      headers: { Origin: APP },
    })
    expect(badId.status).toBe(400)
    expect(badId.headers.get('access-control-allow-origin')).toBe(APP)

    const tooLarge = await api(server, 'POST', '/api/campaigns/spring-sale/qr-code', {
      token,
      body: JSON.stringify({ force: false, padding: 'x'.repeat(8000) }),
      headers: { Origin: APP, Connection: 'close' },
    })
    expect(tooLarge.status).toBe(413)
    expect(tooLarge.headers.get('access-control-allow-origin')).toBe(APP)
  })

  it('sends no CORS headers at all by default (same origin only)', async () => {
    const server = await startTestServer()
    const response = await preflight(server, '/api/campaigns/spring-sale/qr-code', APP)
    expect(response.headers.get('access-control-allow-origin')).toBeNull()
    const answer = await api(server, 'GET', '/api/campaigns/spring-sale/connection', {
      token: await tokenFor('alice'),
      headers: { Origin: APP },
    })
    expect(answer.status).toBe(200)
    expect(answer.headers.get('access-control-allow-origin')).toBeNull()
  })
})

describe('WS_ALLOWED_ORIGINS: WebSocket upgrades by Origin', () => {
  async function refusal(server: TestServer, origin: string, path = '/ws/campaigns') {
    const url = `${server.url.replace('http', 'ws')}${path}`
    const { WebSocket } = await import('ws')
    return new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(url, { origin })
      ws.once('open', () => {
        ws.terminate()
        resolve(101)
      })
      ws.once('unexpected-response', (_request, response) => {
        ws.terminate()
        resolve(response.statusCode ?? 0)
      })
      ws.once('error', reject)
    })
  }

  it('accepts a listed origin, refuses another with 403, and accepts clients that send none', async () => {
    const server = await startTestServer({ WS_ALLOWED_ORIGINS: APP, INSPECT: 'true' })
    const token = await tokenFor('alice')
    const allowed = await openSocket(server, { token, options: { origin: APP } })
    allowed.send({ type: 'subscribe', campaignId: 'spring-sale' })
    await expect(allowed.next((m) => m.type === 'subscribed')).resolves.toBeTruthy()

    const refused = openSocket(server, { options: { origin: OTHER } })
    await expect(refused).rejects.toBeInstanceOf(UpgradeRefused)
    await expect(refused).rejects.toMatchObject({ status: 403 })
    expect(await refusal(server, OTHER, '/ws/inspect')).toBe(403)

    const script = await openSocket(server, { token })
    script.send({ type: 'subscribe', campaignId: 'spring-sale' })
    await expect(script.next((m) => m.type === 'subscribed')).resolves.toBeTruthy()
  })

  it("always accepts the service's own pages (the dashboard and the inspector)", async () => {
    const server = await startTestServer({ WS_ALLOWED_ORIGINS: APP, INSPECT: 'true' })
    expect(await refusal(server, server.url)).toBe(101)
    expect(await refusal(server, server.url.replace('127.0.0.1', 'localhost'))).toBe(403)
  })

  it('defaults to CORS_ORIGINS, and to no check when that is empty', async () => {
    const withCors = await startTestServer({ CORS_ORIGINS: APP })
    expect(await refusal(withCors, APP)).toBe(101)
    expect(await refusal(withCors, OTHER)).toBe(403)

    const open = await startTestServer()
    expect(await refusal(open, OTHER)).toBe(101)
  })
})
