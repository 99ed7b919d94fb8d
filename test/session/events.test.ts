import { describe, expect, it } from 'vitest'
import type { CampaignView, SessionEvent } from '../../src/session/api.ts'
import { SessionEventBus } from '../../src/session/events.ts'
import { endedView } from '../../src/session/views.ts'

const facts = { campaignId: 'c1', owner: 'alice', lastActivity: null }

function statusEvent(bus: SessionEventBus, sessionId: string, campaignId = 'c1'): SessionEvent {
  return {
    campaignId,
    sessionId,
    seq: bus.nextSeq(),
    at: 0,
    type: 'status',
    status: 'cleaning',
    reason: null,
    isConnected: false,
    hasActiveSession: false,
    node: null,
  }
}

describe('SessionEventBus', () => {
  it('delivers an event to observers, to its campaign subscribers and to its session subscribers', () => {
    const bus = new SessionEventBus()
    const seen: string[] = []
    bus.observe(() => seen.push('observer'))
    bus.subscribeToCampaign(endedView(facts, undefined), undefined, () => seen.push('c1'), 0)
    bus.subscribeToCampaign(
      endedView({ ...facts, campaignId: 'c2' }, undefined),
      undefined,
      () => seen.push('c2'),
      0
    )
    bus.subscribeToSession('s1', endedView(facts, undefined), undefined, () => seen.push('s1'), 0)
    seen.length = 0
    bus.publish(statusEvent(bus, 's1'))
    expect(seen).toEqual(['observer', 'c1', 's1'])
  })

  it('replays subscribed then the QR shown, with increasing seq', () => {
    const bus = new SessionEventBus()
    const view: CampaignView = {
      ...endedView(facts, undefined),
      sessionId: 's1',
      status: 'awaitingScan',
      hasActiveSession: true,
      qr: { qr: 'QR', attempt: 1, expiresAt: 10 },
    }
    const events: SessionEvent[] = []
    bus.subscribeToCampaign(view, undefined, (event) => events.push(event), 5)
    expect(events.map((e) => [e.type, e.seq, e.at])).toEqual([
      ['subscribed', 1, 5],
      ['qr', 2, 5],
    ])
  })

  it("replays an ended session's failure as its error", () => {
    const bus = new SessionEventBus()
    const view = endedView(facts, {
      campaignId: 'c1',
      sessionId: 's1',
      status: 'failed',
      reason: 'engine_failed',
      failure: { code: 'engine_failed', message: 'm', detail: null },
      history: [],
      endedAt: 0,
    })
    const events: SessionEvent[] = []
    bus.subscribeToCampaign(
      view,
      { code: 'engine_failed', message: 'm', detail: null },
      (e) => events.push(e),
      0
    )
    expect(events.map((e) => e.type)).toEqual(['subscribed', 'error'])
  })

  it('keeps nothing for a campaign or session once its last subscriber leaves', () => {
    const bus = new SessionEventBus()
    const a = bus.subscribeToCampaign(endedView(facts, undefined), undefined, () => {}, 0)
    const b = bus.subscribeToSession('s1', endedView(facts, undefined), undefined, () => {}, 0)
    expect(bus.subscribedKeys).toBe(2)
    a.unsubscribe()
    b.unsubscribe()
    b.unsubscribe()
    expect(bus.subscribedKeys).toBe(0)
  })

  it("reports a listener's error and still delivers to the others", () => {
    const errors: unknown[] = []
    const bus = new SessionEventBus((error) => errors.push(error))
    const seen: number[] = []
    bus.observe(() => {
      throw new Error('bug')
    })
    bus.observe((event) => seen.push(event.seq))
    bus.publish(statusEvent(bus, 's1'))
    expect(seen).toEqual([1])
    expect(errors).toHaveLength(1)
  })
})
