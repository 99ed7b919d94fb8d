import fc from 'fast-check'
import { describe, expect, it, vi } from 'vitest'
import type { SessionEvent } from '../../src/session/api.ts'
import { alice, createHarness } from '../support/harness.ts'

const CAMPAIGNS = ['a', 'b', 'c'] as const
const campaign = fc.constantFrom(...CAMPAIGNS)

type Command =
  | { kind: 'request'; campaignId: string; force: boolean }
  | { kind: 'cleanup'; campaignId: string }
  | { kind: 'scan' | 'crash' | 'disconnect'; campaignId: string }
  | {
      kind: 'behaviour'
      campaignId: string
      startup: 'qr' | 'hang' | 'error' | 'restored'
      teardown: 'normal' | 'hang'
    }
  | { kind: 'advance'; ms: number }

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ kind: fc.constant('request' as const), campaignId: campaign, force: fc.boolean() }),
  fc.record({ kind: fc.constant('cleanup' as const), campaignId: campaign }),
  fc.record({
    kind: fc.constantFrom('scan' as const, 'crash' as const, 'disconnect' as const),
    campaignId: campaign,
  }),
  fc.record({
    kind: fc.constant('behaviour' as const),
    campaignId: campaign,
    startup: fc.constantFrom('qr' as const, 'hang' as const, 'error' as const, 'restored' as const),
    teardown: fc.constantFrom('normal' as const, 'hang' as const),
  }),
  fc.record({
    kind: fc.constant('advance' as const),
    ms: fc.constantFrom(0, 20, 300, 1_000, 5_000, 20_000, 31_000),
  })
)

describe('supervisor under random interleavings', () => {
  it('keeps its invariants for requests, cleanups, engine events and clock steps', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 40 }), async (commands) => {
        const h = createHarness({ service: { random: () => 0.5 } })
        const events: SessionEvent[] = []
        for (const campaignId of CAMPAIGNS)
          h.sessions.subscribe({ campaignId }, (e) => events.push(e))
        const cleanups: Promise<unknown>[] = []
        try {
          for (const c of commands) {
            switch (c.kind) {
              case 'request':
                h.sessions.requestSession({
                  campaignId: c.campaignId,
                  caller: alice,
                  force: c.force,
                })
                break
              case 'cleanup':
                cleanups.push(h.sessions.cleanupSession(c.campaignId))
                break
              case 'scan':
              case 'crash':
              case 'disconnect':
                h.engine[c.kind](c.campaignId)
                break
              case 'behaviour':
                h.engine.setBehaviour(c.campaignId, { startup: c.startup, teardown: c.teardown })
                break
              case 'advance':
                await h.advance(c.ms)
                break
            }
            for (const campaignId of CAMPAIGNS) {
              // Never two live engines for one campaign.
              expect(h.engine.liveCountOf(campaignId)).toBeLessThanOrEqual(1)
            }
            // An engine runs only while its session does.
            expect(h.engine.liveCount()).toBeLessThanOrEqual(h.sessions.stats().live)
          }
          const { timersLeft, errors } = await h.dispose()
          expect(errors).toEqual([])
          await Promise.all(cleanups)
          // Every engine started was stopped, and nothing is left running.
          const counters = h.engine.counters()
          expect(counters.stopped).toBe(counters.started)
          expect(h.engine.liveCount()).toBe(0)
          expect(timersLeft).toBe(0)
          // Every subscriber saw a final outcome for each session.
          const sessionIds = new Set(events.filter((e) => e.sessionId).map((e) => e.sessionId))
          for (const sessionId of sessionIds) {
            const final = events.find(
              (e) => e.sessionId === sessionId && e.type === 'status' && e.status === 'cleaned'
            )
            expect(final, `session ${sessionId} has no final outcome`).toBeDefined()
          }
        } finally {
          vi.useRealTimers()
        }
      }),
      { numRuns: 100 }
    )
  })
})
