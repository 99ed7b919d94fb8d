/**
 * HTTP details of issue 8 (item 6) and the upgrade dispatch of item 1, over a real server: a 413
 * leaves a keep-alive client working, `?force=` is strict, a wrong method on a known route is
 * 405 with `Allow`, the simulator's 409 has its own code, and a request that offers an upgrade
 * to an ordinary route is served as HTTP.
 */
import { connect, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { api, closeAll, startTestServer, tokenFor, type TestServer } from '../support/edge.ts'

afterEach(closeAll)

describe('413 for an oversized body', () => {
  // Issue 8, item 6: after a 413 the connection was dropped without a word, and the keep-alive
  // pool of Node's fetch failed a later request on it with UND_ERR_SOCKET.
  it('closes the connection cleanly, so a keep-alive client keeps working', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const headers = { Authorization: `Bearer ${token}` }
    const oversized: Array<() => RequestInit> = [
      () => ({ body: new Uint8Array(1024 * 1024) }),
      () => ({ body: new Uint8Array(10 * 1024 * 1024) }),
      // Chunked, without Content-Length: the limit is found while reading.
      () => ({
        body: new ReadableStream({
          start(controller) {
            for (let i = 0; i < 100; i++) controller.enqueue(new Uint8Array(1000))
            controller.close()
          },
        }),
        duplex: 'half',
      }),
    ]
    for (let round = 0; round < 3; round++) {
      for (const body of oversized) {
        const refused = await fetch(`${server.url}/api/campaigns/big/qr-code`, {
          method: 'POST',
          headers,
          ...body(),
        } as RequestInit)
        expect(refused.status).toBe(413)
        expect(refused.headers.get('connection')).toBe('close')
        expect((await refused.json()).error.code).toBe('invalid_body')
        for (let i = 0; i < 4; i++) {
          const after = await fetch(`${server.url}/api/campaigns/c${i}/connection`, { headers })
          expect(after.status).toBe(200)
          await after.arrayBuffer()
        }
      }
    }
  })
})

describe('?force=', () => {
  it('accepts true|false|1|0 and answers 400 invalid_body for anything else, empty too', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    for (const value of ['true', 'false', '1', '0']) {
      const { status } = await api(server, 'POST', `/api/campaigns/c1/qr-code?force=${value}`, {
        token,
      })
      expect(status).toBeLessThan(300)
    }
    for (const query of ['?force=', '?force', '?force=yes']) {
      const { status, json } = await api(server, 'POST', `/api/campaigns/c2/qr-code${query}`, {
        token,
      })
      expect({ query, status, code: json.error.code }).toEqual({
        query,
        status: 400,
        code: 'invalid_body',
      })
    }
    // The refused requests started nothing (c1's forced restarts start engines on their own time).
    expect(server.sessions.getCampaign('c2')).toMatchObject({ sessionId: null, owner: null })
  })
})

describe('405 for a wrong method on a known route', () => {
  const cases: Array<[method: string, path: string, allow: string]> = [
    ['POST', '/healthz', 'GET, HEAD'],
    ['DELETE', '/readyz', 'GET, HEAD'],
    ['PUT', '/metrics', 'GET, HEAD'],
    ['POST', '/', 'GET, HEAD'],
    ['POST', '/inspect', 'GET, HEAD'],
    ['DELETE', '/assets/app.css', 'GET, HEAD'],
    ['POST', '/assets/vendor/mermaid/mermaid.esm.min.mjs', 'GET, HEAD'],
    ['POST', '/api/campaigns', 'GET, HEAD'],
    ['GET', '/api/campaigns/c1/qr-code', 'POST'],
    ['DELETE', '/api/campaigns/c1/qr-code', 'POST'],
    ['POST', '/api/campaigns/c1/connection', 'GET, HEAD'],
    ['GET', '/api/campaigns/c1/cleanup-session', 'POST'],
    ['GET', '/api/simulator/campaigns/c1/scan', 'POST'],
    ['PUT', '/api/simulator/campaigns/c1/disconnect', 'POST'],
    ['HEAD', '/api/simulator/campaigns/c1/crash', 'POST'],
    ['POST', '/api/simulator/campaigns/c1/behaviour', 'PUT'],
  ]

  it('answers 405 method_not_allowed with Allow on every route, pages and simulator included', async () => {
    const server = await startTestServer({ INSPECT: 'true' })
    const token = await tokenFor('alice')
    for (const [method, path, allow] of cases) {
      const response = await fetch(`${server.url}${path}`, {
        method,
        headers: { Authorization: `Bearer ${token}` },
      })
      const text = await response.text()
      expect({
        method,
        path,
        status: response.status,
        allow: response.headers.get('allow'),
      }).toEqual({ method, path, status: 405, allow })
      if (method !== 'HEAD') {
        expect(JSON.parse(text).error).toEqual({
          code: 'method_not_allowed',
          message: `${method} is not allowed on ${path}; use ${allow}.`,
        })
      }
    }
    expect(server.simulator.counters().started).toBe(0)
  })

  it('keeps 404 not_found for a path nothing answers, and the right methods still work', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const unknown = await api(server, 'POST', '/api/nothing-here', { token })
    expect({ status: unknown.status, code: unknown.json.error.code }).toEqual({
      status: 404,
      code: 'not_found',
    })
    expect((await fetch(`${server.url}/healthz`, { method: 'HEAD' })).status).toBe(200)
    expect((await api(server, 'GET', '/api/campaigns/c1/connection', { token })).status).toBe(200)
    expect((await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })).status).toBe(202)
  })

  it('authenticates first: a wrong method without a token on an API route is 401', async () => {
    const server = await startTestServer()
    const { status } = await api(server, 'GET', '/api/campaigns/c1/qr-code')
    expect(status).toBe(401)
  })
})

describe('simulator 409', () => {
  it('answers nothing_to_do when there is nothing to scan, log out or crash', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    for (const action of ['scan', 'disconnect', 'crash']) {
      const { status, json } = await api(server, 'POST', `/api/simulator/campaigns/c1/${action}`, {
        token,
      })
      expect({ action, status, code: json.error.code }).toEqual({
        action,
        status: 409,
        code: 'nothing_to_do',
      })
    }
  })
})

/** Sends raw bytes on one connection and collects what comes back. */
function rawConnection(server: TestServer): Promise<{
  socket: Socket
  received: () => string
  waitFor: (pattern: RegExp) => Promise<string>
}> {
  const { port } = server
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    const waiters: Array<() => void> = []
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1')
      for (const wake of waiters.splice(0)) wake()
    })
    socket.once('error', reject)
    socket.once('connect', () =>
      resolve({
        socket,
        received: () => text,
        waitFor: async (pattern) => {
          const deadline = Date.now() + 5000
          while (!pattern.test(text)) {
            if (Date.now() > deadline) throw new Error(`no ${pattern} in ${JSON.stringify(text)}`)
            await new Promise<void>((wake) => {
              const timer = setTimeout(wake, 100)
              waiters.push(() => {
                clearTimeout(timer)
                wake()
              })
            })
          }
          return text
        },
      })
    )
  })
}

describe('a request that offers an upgrade to an ordinary route', () => {
  // Issue 8, item 1: `curl --http2 …/healthz` (an h2c upgrade offer) was answered 404.
  it('is served as HTTP: h2c to /healthz, then a POST with a body on the same connection', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const connection = await rawConnection(server)
    connection.socket.write(
      'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n' +
        'Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n'
    )
    const first = await connection.waitFor(/\{"status":"ok"\}/)
    expect(first).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
    expect(first).toMatch(/\r\nConnection: keep-alive\r\n/i)

    const body = '{"force":false}'
    connection.socket.write(
      `POST /api/campaigns/c1/qr-code HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n` +
        `Upgrade: h2c\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\n\r\n${body}`
    )
    const second = await connection.waitFor(/"campaignId":"c1"/)
    expect(second.slice(first.length)).toMatch(/^HTTP\/1\.1 202 Accepted\r\n/)
    connection.socket.destroy()
  })

  it('serves a WebSocket upgrade to a path that is not a WebSocket endpoint as HTTP too', async () => {
    const server = await startTestServer()
    const answers = await Promise.all(
      ['/healthz', '/nope', '/ws/inspect'].map(
        (path) =>
          new Promise<number>((resolve, reject) => {
            const ws = new WebSocket(`${server.url.replace('http', 'ws')}${path}`)
            ws.once('unexpected-response', (_request, response) => {
              resolve(response.statusCode ?? 0)
              ws.terminate()
            })
            ws.once('open', () => reject(new Error(`${path} upgraded`)))
            // terminate() before the handshake completed reports an error: expected here.
            ws.once('error', reject)
          })
      )
    )
    // INSPECT is off: /ws/inspect is an ordinary (unknown) path.
    expect(answers).toEqual([200, 404, 404])
  })
})
