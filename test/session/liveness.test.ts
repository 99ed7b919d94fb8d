/**
 * The liveness probe through the whole session service (supervisor, campaign machines, the
 * simulated engine), in simulated time: issue 15, a session that says connected while it is dead.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { DEFAULT_LIVENESS } from '../../src/session/liveness.ts'
import { alice, createHarness } from '../support/harness.ts'

type Harness = ReturnType<typeof createHarness>
let h: Harness

afterEach(async () => {
  const { timersLeft, errors } = await h.dispose()
  // Probes stop with their sessions: no timer is left, no error was swallowed.
  expect(timersLeft).toBe(0)
  expect(errors).toEqual([])
  expect(h.engine.liveCount()).toBe(0)
})

const { intervalMs, timeoutMs, misses } = DEFAULT_LIVENESS

async function linkAndReady(campaignId: string) {
  h.sessions.requestSession({ campaignId, caller: alice })
  await h.advance(300)
  h.engine.scan(campaignId)
  await h.advance(500)
  expect(h.sessions.getCampaign(campaignId).status).toBe('ready')
}

describe('liveness probe of ready sessions', () => {
  it('ends a session whose page hangs unresponsive after LIVENESS_MISSES, and restarts it with its saved auth', async () => {
    h = createHarness({ service: { random: () => 0 } })
    await linkAndReady('spring-sale')
    const recorded = h.record('spring-sale')
    const first = h.sessions.getCampaign('spring-sale')
    h.engine.setBehaviour('spring-sale', { liveness: 'hang' })

    // Whatever its offset, the session ends within misses × interval + timeout.
    let endedAfter = 0
    while (h.sessions.getCampaign('spring-sale').sessionId === first.sessionId) {
      if (h.sessions.getCampaign('spring-sale').status === 'failed') break
      await h.advance(100)
      endedAfter += 100
      expect(endedAfter).toBeLessThanOrEqual(misses * intervalMs + timeoutMs)
    }
    await h.advance(20) // the engine's teardown
    const ended = h.sessions.getCampaign('spring-sale')
    expect(ended).toMatchObject({
      sessionId: first.sessionId,
      status: 'failed',
      reason: 'unresponsive',
      isConnected: false,
    })
    expect(ended.history.find((entry) => entry.status === 'failed')?.detail).toBe(
      `the WhatsApp page did not answer within ${timeoutMs} ms (${misses} liveness probes in a row)`
    )
    // The last time it was seen alive stays with the ended session.
    expect(ended.lastSeenAlive).toBeGreaterThanOrEqual(first.lastSeenAlive!)
    expect(recorded.events).toContainEqual(
      expect.objectContaining({
        type: 'error',
        code: 'unresponsive',
        message:
          'The session looked connected but WhatsApp stopped answering; the session was cleaned up.',
      })
    )
    expect(h.sessions.stats().probes.missed).toBe(misses)

    // The restart policy takes over as for a crash: after the backoff (random 0: 500 ms), a new
    // session on the saved login comes back ready without a scan.
    h.engine.setBehaviour('spring-sale', { liveness: 'healthy' })
    await h.advance(500 + 300 + 500)
    const restarted = h.sessions.getCampaign('spring-sale')
    expect(restarted.status).toBe('ready')
    expect(restarted.sessionId).not.toBe(first.sessionId)
    expect(h.engine.counters().started).toBe(2)
    expect(h.engine.liveCount()).toBe(1)
    recorded.unsubscribe()
  })

  it('ends a session whose WhatsApp is disconnected without an event, and tells why', async () => {
    h = createHarness()
    await linkAndReady('spring-sale')
    const recorded = h.record('spring-sale')
    h.engine.setBehaviour('spring-sale', { liveness: 'disconnected' })
    await h.advance(misses * intervalMs)
    // (It may be restarted meanwhile, and end the same way: the first ending is this one.)
    expect(recorded.events.find((event) => event.type === 'error')).toMatchObject({
      code: 'unresponsive',
      detail: `WhatsApp reports the connection state TIMEOUT (${misses} liveness probes in a row)`,
    })
    recorded.unsubscribe()
  })

  it('keeps a session ready that recovers between misses, and moves lastSeenAlive on', async () => {
    h = createHarness()
    await linkAndReady('spring-sale')
    h.engine.setBehaviour('spring-sale', { liveness: 'hang' })
    const probes = () => h.engine.counters().probes
    // Up to the first probe, and its timeout: one miss.
    while (probes() === 0) await h.advance(100)
    await h.advance(timeoutMs)
    expect(h.sessions.stats().probes).toEqual({ alive: 0, missed: 1 })
    h.engine.setBehaviour('spring-sale', { liveness: 'healthy' })
    await h.advance(intervalMs)
    expect(h.sessions.stats().probes).toEqual({ alive: 1, missed: 1 })
    const view = h.sessions.getCampaign('spring-sale')
    expect(view.status).toBe('ready')
    expect(Date.now() - view.lastSeenAlive!).toBeLessThan(intervalMs)
    // A second miss alone is not two in a row.
    h.engine.setBehaviour('spring-sale', { liveness: 'disconnected' })
    await h.advance(intervalMs)
    h.engine.setBehaviour('spring-sale', { liveness: 'healthy' })
    await h.advance(3 * intervalMs)
    expect(h.sessions.getCampaign('spring-sale').status).toBe('ready')
    expect(h.engine.counters().started).toBe(1)
  })

  it('spreads the probes of 1,000 sessions that became ready together over the interval', async () => {
    h = createHarness()
    const count = 1_000
    for (let i = 0; i < count; i++) {
      h.engine.setBehaviour(`c-${i}`, { startup: 'restored' })
      h.sessions.requestSession({ campaignId: `c-${i}`, caller: alice })
    }
    await h.advance(800)
    expect(h.sessions.stats().byStatus.ready).toBe(count)
    // A session at offset 0 is probed 1 ms after its ready (a timer of 0 ms fires after 1 ms),
    // and then on its rhythm: ready at 800, probed at 801 and 30,800. The window starts after
    // every such first probe, or that session counted twice in it (about one run in thirty).
    await h.advance(1)
    const buckets: number[] = []
    let before = h.engine.counters().probes
    for (let i = 0; i < 10; i++) {
      await h.advance(intervalMs / 10)
      const now = h.engine.counters().probes
      buckets.push(now - before)
      before = now
    }
    // Each session once per interval, and no tenth of the interval gets much more than its share
    // (binomial: 100 ± 9.5).
    expect(buckets.reduce((sum, n) => sum + n, 0)).toBe(count)
    for (const probes of buckets) {
      expect(probes).toBeGreaterThan(60)
      expect(probes).toBeLessThan(140)
    }
    // Every probe sent so far (the window's, and any a session at offset 0 sent before it) was
    // answered alive.
    expect(h.sessions.stats().probes).toEqual({ alive: h.engine.counters().probes, missed: 0 })
  })

  it('costs no probe while nothing is ready', async () => {
    h = createHarness()
    h.sessions.requestSession({ campaignId: 'spring-sale', caller: alice })
    await h.advance(29_000)
    expect(h.sessions.getCampaign('spring-sale').status).toBe('awaitingScan')
    expect(h.engine.counters().probes).toBe(0)
  })
})
