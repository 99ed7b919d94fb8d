import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocketServer } from 'ws'
import { createSimulatedEngine } from '../../src/engines/simulated.ts'
import { createSessionService, type SupervisedSessionService } from '../../src/session/service.ts'
import { forwardToStately, type StatelyForwarding } from '../../src/inspect/stately.ts'
import { hideSecrets } from '../../src/inspect/redaction.ts'

describe('forwardToStately (INSPECT_STATELY_URL)', () => {
  let relay: WebSocketServer | undefined
  let sessions: SupervisedSessionService | undefined
  let forwarding: StatelyForwarding | undefined

  afterEach(async () => {
    forwarding?.stop()
    await sessions?.shutdown()
    await new Promise((resolve) => (relay ? relay.close(resolve) : resolve(undefined)))
  })

  it('refuses a URL that is not a WebSocket URL', async () => {
    await expect(
      forwardToStately({ sessions: { inspect: () => ({ unsubscribe() {} }) }, url: 'http://x' })
    ).rejects.toThrow('INSPECT_STATELY_URL')
  })

  it('sends the actors’ inspection events to the relay, without QR texts', async () => {
    relay = new WebSocketServer({ port: 0, host: '127.0.0.1' })
    await new Promise((resolve) => relay!.once('listening', resolve))
    const received: Array<Record<string, unknown>> = []
    relay.on('connection', (socket) =>
      socket.on('message', (data) => received.push(JSON.parse(String(data))))
    )
    sessions = createSessionService({
      engine: createSimulatedEngine({ qrDelayMs: 10 }),
      timeouts: { initMs: 5_000, scanMs: 5_000, authMs: 5_000, destroyMs: 500, killMs: 500 },
      maxSessions: 10,
    })
    const { port } = relay.address() as AddressInfo
    forwarding = await forwardToStately({ sessions, url: `ws://127.0.0.1:${port}` })
    sessions.requestSession({ campaignId: 'stately', caller: { userId: 'u', admin: false } })
    const qr = await new Promise<string>((resolve) => {
      const timer = setInterval(() => {
        const shown = sessions!.getCampaign('stately').qr?.qr
        if (shown) {
          clearInterval(timer)
          resolve(shown)
        }
      }, 10)
    })
    const started = Date.now()
    while (
      !received.some(
        (m) => m.type === '@xstate.snapshot' && JSON.stringify(m).includes('awaitingScan')
      )
    ) {
      if (Date.now() - started > 5_000) throw new Error(`no snapshot: ${received.length} messages`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    // Both the supervisor and the campaign actor are announced, though both existed before.
    const announced = received.filter((m) => m.type === '@xstate.actor')
    expect(announced.length).toBeGreaterThanOrEqual(2)
    expect(announced.some((m) => String(m.definition).includes('"id":"campaign"'))).toBe(true)
    expect(JSON.stringify(received)).not.toContain(qr)
  })

  it('hides QR texts and tokens in nested objects', () => {
    expect(hideSecrets({ a: { qr: '2@x', attempt: 1 }, token: 't', list: [{ qr: 'y' }] })).toEqual({
      a: { qr: '[hidden]', attempt: 1 },
      token: '[hidden]',
      list: [{ qr: '[hidden]' }],
    })
  })
})
