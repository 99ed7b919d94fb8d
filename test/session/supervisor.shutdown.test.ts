import { expect, it } from 'vitest'
import { alice, createHarness, TIMEOUTS } from '../support/harness.ts'

it('shuts down 1,000 live sessions, 100 of them with a hanging teardown, within DESTROY_TIMEOUT_MS plus the kill bound', async () => {
  const h = createHarness({ service: { maxSessions: 1_000 } })
  for (let i = 0; i < 1_000; i++) {
    const campaignId = `campaign-${i}`
    if (i % 10 === 0) h.engine.setBehaviour(campaignId, { teardown: 'hang' })
    const result = h.sessions.requestSession({ campaignId, caller: alice })
    expect(result.ok).toBe(true)
  }
  await h.advance(300)
  expect(h.sessions.stats().byStatus.awaitingScan).toBe(1_000)

  const startedAt = Date.now()
  let stoppedAt: number | undefined
  const shutdown = h.sessions.shutdown().then(() => (stoppedAt = Date.now()))
  const bound = TIMEOUTS.destroyMs + TIMEOUTS.killMs
  for (let elapsed = 0; elapsed <= bound && stoppedAt === undefined; elapsed += 100)
    await h.advance(100)
  await shutdown

  expect(stoppedAt! - startedAt).toBeLessThanOrEqual(bound)
  expect(h.engine.liveCount()).toBe(0)
  expect(h.engine.counters()).toMatchObject({ started: 1_000, stopped: 1_000, forcedStops: 100 })
  expect(h.sessions.stats().live).toBe(0)
  const { timersLeft } = await h.dispose()
  expect(timersLeft).toBe(0)
})
