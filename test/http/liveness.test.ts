/**
 * The liveness probe at the edge (issue 15), over a real server with the simulated engine and a
 * short probe interval: `GET …/connection`'s `lastSeenAlive`, the simulator's `liveness`
 * behaviour, the `unresponsive` reason, and the probe metrics.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { api, closeAll, eventually, startTestServer, tokenFor } from '../support/edge.ts'

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
const LIVENESS_ENV = {
  LIVENESS_INTERVAL_MS: '100',
  LIVENESS_TIMEOUT_MS: '50',
  LIVENESS_MISSES: '2',
}

afterEach(closeAll)

describe('liveness of a ready session', () => {
  it('shows lastSeenAlive, and ends a hung session unresponsive with it kept', async () => {
    const server = await startTestServer(LIVENESS_ENV)
    const token = await tokenFor('alice')
    const connection = async () =>
      (await api(server, 'GET', '/api/campaigns/spring-sale/connection', { token })).json
    await api(server, 'POST', '/api/campaigns/spring-sale/qr-code', { token })
    await eventually(async () => (await connection()).status === 'awaitingScan')
    expect((await connection()).lastSeenAlive).toBeNull()
    await api(server, 'POST', '/api/simulator/campaigns/spring-sale/scan', { token })
    await eventually(async () => (await connection()).status === 'ready')
    const ready = await connection()
    expect(ready.lastSeenAlive).toMatch(ISO)
    // Probes answered move it on.
    await eventually(async () => (await connection()).lastSeenAlive > ready.lastSeenAlive)

    const set = await api(server, 'PUT', '/api/simulator/campaigns/spring-sale/behaviour', {
      token,
      body: { liveness: 'hang' },
    })
    expect(set.status).toBe(200)
    expect(set.json.behaviour).toMatchObject({ liveness: 'hang' })
    let ended: Awaited<ReturnType<typeof connection>> | undefined
    await eventually(async () => {
      const view = await connection()
      if (view.reason === 'unresponsive') ended = view
      return ended !== undefined
    })
    expect(ended).toMatchObject({
      sessionId: ready.sessionId,
      isConnected: false,
      hasActiveSession: false,
      detail: 'the WhatsApp page did not answer within 50 ms (2 liveness probes in a row)',
      lastSeenAlive: expect.stringMatching(ISO),
    })

    const metrics = await fetch(`${server.url}/metrics`).then((response) => response.text())
    expect(metrics).toMatch(/^qrvisor_liveness_probes_total\{outcome="alive"\} [1-9]\d*$/m)
    expect(metrics).toMatch(/^qrvisor_liveness_probes_total\{outcome="missed"\} [2-9]\d*$/m)
    expect(metrics).toMatch(/^qrvisor_session_failures_total\{reason="unresponsive"\} [1-9]\d*$/m)
  })

  it('refuses an unknown liveness behaviour', async () => {
    const server = await startTestServer(LIVENESS_ENV)
    const token = await tokenFor('alice')
    const { status, json } = await api(
      server,
      'PUT',
      '/api/simulator/campaigns/spring-sale/behaviour',
      { token, body: { liveness: 'asleep' } }
    )
    expect(status).toBe(400)
    expect(json.error.code).toBe('invalid_body')
  })
})
