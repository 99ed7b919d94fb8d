/**
 * Issue 8, item 4: a session id is a capability (it is all an anonymous socket needs to receive
 * that session's QR), and it was logged at `info` on every status line. Logs carry `session`, a
 * short hash, instead.
 */
import { createHash } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { createLogger } from '../src/logger.ts'
import { sessionTag } from '../src/sessionTag.ts'
import { api, closeAll, eventually, startTestServer, tokenFor, type Json } from './support/edge.ts'

afterEach(closeAll)

describe('sessionTag', () => {
  it('is the first 8 hex digits of the SHA-256 of the session id', () => {
    const id = '0b6f7a0e-3c1e-4f7c-9a53-2f1f0d6c9e11'
    expect(sessionTag(id)).toBe(createHash('sha256').update(id).digest('hex').slice(0, 8))
    expect(sessionTag(id)).toMatch(/^[0-9a-f]{8}$/)
    expect(sessionTag(null)).toBeNull()
  })
})

describe('the logs of a session', () => {
  it('never contain its id: every line about it carries session = sessionTag(id)', async () => {
    const lines: Json[] = []
    const logger = createLogger({
      level: 'info',
      destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
    })
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
