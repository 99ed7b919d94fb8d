/**
 * Issue 8, item 4: a session id is a capability (it is all an anonymous socket needs to receive
 * that session's QR), and it was logged at `info` on every status line. Logs carry `session`, a
 * short hash, instead.
 */
import { createHash } from 'node:crypto'
import type { Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { createLogger } from '../src/logger.ts'
import { sessionTag } from '../src/sessionTag.ts'
import {
  api,
  closeAll,
  eventually,
  openSocket,
  startTestServer,
  tokenFor,
  type Json,
} from './support/edge.ts'

afterEach(closeAll)

describe('sessionTag', () => {
  it('is the first 8 hex digits of the SHA-256 of the session id', () => {
    const id = '0b6f7a0e-3c1e-4f7c-9a53-2f1f0d6c9e11'
    expect(sessionTag(id)).toBe(createHash('sha256').update(id).digest('hex').slice(0, 8))
    expect(sessionTag(id)).toMatch(/^[0-9a-f]{8}$/)
    expect(sessionTag(null)).toBeNull()
  })
})

function capturingLogger() {
  const lines: Json[] = []
  const logger = createLogger({
    level: 'info',
    destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
  })
  return { lines, logger }
}

describe('the logs of a session', () => {
  it('name a slow consumer by its number of subscriptions, not by their session ids', async () => {
    const { lines, logger } = capturingLogger()
    const server = await startTestServer({}, { logger, websocket: { maxBufferedBytes: 64 * 1024 } })
    const { json } = await api(server, 'POST', '/api/campaigns/c1/qr-code', {
      token: await tokenFor('alice'),
    })
    const socket = await openSocket(server)
    socket.send({ type: 'subscribe', sessionId: json.sessionId })
    await socket.next((m) => m.type === 'subscribed')
    const raw = (socket.ws as unknown as { _socket: Socket })._socket
    raw.pause()
    const ping = JSON.stringify({ type: 'ping' })
    for (let i = 0; i < 200_000; i++) socket.ws.send(ping)
    // Filling the kernel's buffers first takes a while when the machine is busy.
    await eventually(() => lines.some((line) => line.msg.includes('does not read')), {
      timeoutMs: 40_000,
      intervalMs: 50,
    })
    raw.resume()
    const warning = lines.find((line) => line.msg.includes('does not read'))
    expect(warning.subscriptions).toBe(1)
    expect(JSON.stringify(lines)).not.toContain(json.sessionId)
  }, 45_000)

  it('never contain its id: every line about it carries session = sessionTag(id)', async () => {
    const { lines, logger } = capturingLogger()
    const server = await startTestServer({}, { logger })
    const token = await tokenFor('alice')
    const first = await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    await eventually(async () => {
      const { json } = await api(server, 'GET', '/api/campaigns/c1/connection', { token })
      return json.status === 'awaitingScan'
    })
    await api(server, 'POST', '/api/simulator/campaigns/c1/scan', { token })
    const second = await api(server, 'POST', '/api/campaigns/c1/qr-code', {
      token,
      body: { force: true },
    })
    await api(server, 'POST', '/api/campaigns/c1/cleanup-session', { token })
    const ids: string[] = [first.json.sessionId, second.json.sessionId]

    const log = JSON.stringify(lines)
    for (const id of ids) expect(log).not.toContain(id)
    const tagged = lines.filter((line) => line.session !== undefined)
    expect(new Set(tagged.map((line) => line.msg))).toEqual(
      new Set([
        'session status',
        'QR code requested',
        'Simulator action',
        'Session cleanup requested',
      ])
    )
    expect(new Set(tagged.map((line) => line.session))).toEqual(
      new Set(ids.map((id) => sessionTag(id)))
    )
  })
})
