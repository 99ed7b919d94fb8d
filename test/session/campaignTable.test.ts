import { describe, expect, it } from 'vitest'
import { SimulatedClock, type AnyActorRef } from 'xstate'
import { createCampaignMachine } from '../../src/session/campaignMachine.ts'
import { CampaignTable } from '../../src/session/campaignTable.ts'
import { createEngineControl } from '../../src/session/engineControl.ts'
import { liveView } from '../../src/session/views.ts'

const flush = () => new Promise<void>((resolve) => setImmediate(resolve))

/** A table whose engines start and stop at once, and a stand-in supervisor that records ends. */
function createTable(maxTombstones = 10) {
  const machine = createCampaignMachine({
    now: () => 0,
    engines: createEngineControl({
      name: 'inert',
      createSession: () => ({
        start: () => {},
        stop: async () => ({ forced: false, durationMs: 0 }),
        probe: async () => ({ state: 'CONNECTED' }),
      }),
      close: async () => {},
    }),
  })
  const table = new CampaignTable({
    machine,
    timeouts: { initMs: 60_000, scanMs: 60_000, authMs: 60_000, teardownMs: 60_000 },
    clock: new SimulatedClock(),
    now: () => 0,
    maxTombstones,
    tombstoneTtlMs: 60_000,
  })
  const ended: string[] = []
  const supervisor = {
    send: (event: { type: string; sessionId: string }) => {
      if (event.type === 'SESSION.ENDED') ended.push(event.sessionId)
    },
  } as unknown as AnyActorRef
  /** Cleans the session up and records its end, as the supervisor does. */
  async function end(sessionId: string) {
    table.session(sessionId)!.actor.send({ type: 'CLEANUP.REQUESTED' })
    await flush()
    expect(ended).toContain(sessionId)
    return table.endSession(sessionId)
  }
  return { table, supervisor, end }
}

describe('CampaignTable', () => {
  it("shows a campaign's live session, then the tombstone it left", async () => {
    const { table, supervisor, end } = createTable()
    const session = table.startSession(supervisor, 'c1', 's1', 'alice')
    expect(table.view('c1')).toMatchObject({
      campaignId: 'c1',
      owner: 'alice',
      sessionId: 's1',
      status: 'initializing',
      hasActiveSession: true,
    })
    expect(table.view('c1')).toEqual(
      liveView(
        { campaignId: 'c1', owner: 'alice', lastActivity: 0 },
        's1',
        session.actor.getSnapshot(),
        null
      )
    )
    const { ended } = await end('s1')
    expect(ended).toMatchObject({ status: 'cleaned', reason: 'cleanup_requested' })
    expect(table.view('c1')).toMatchObject({
      sessionId: 's1',
      status: 'cleaned',
      hasActiveSession: false,
    })
    expect(table.liveCount).toBe(0)
    expect(table.stats().byStatus).toMatchObject({ idle: 0, initializing: 0, cleaned: 0 })
    table.close()
  })

  it('starts a replacement behind the session it replaces, and hands it over when that ends', async () => {
    const { table, supervisor, end } = createTable()
    table.startSession(supervisor, 'c1', 's1', 'alice')
    const old = table.retireCurrent('c1')!
    old.actor.send({ type: 'CLEANUP.REQUESTED' })
    table.startSession(supervisor, 'c1', 's2', 'bob')
    expect(table.hasDraining('c1')).toBe(true)
    expect(table.sessionsOf('c1').map((s) => s.sessionId)).toEqual(['s2', 's1'])
    // The campaign keeps its first owner.
    expect(table.ownerOf('c1')).toBe('alice')
    await flush()
    const { successor } = table.endSession('s1')
    expect(successor?.sessionId).toBe('s2')
    await end('s2')
    table.close()
  })

  it('forgets a campaign and its owner with its last tombstone, and lists only what it remembers', async () => {
    const { table, supervisor, end } = createTable(1)
    table.startSession(supervisor, 'c1', 's1', 'alice')
    table.startSession(supervisor, 'c2', 's2', 'alice')
    expect(table.listCampaigns({ limit: 10 }).entries.map((v) => v.campaignId)).toEqual([
      'c1',
      'c2',
    ])
    await end('s1')
    await end('s2')
    expect(table.campaignCount).toBe(1)
    expect(table.ownerOf('c1')).toBeUndefined()
    expect(table.view('c1')).toMatchObject({ owner: null, sessionId: null, status: 'idle' })
    expect(table.listCampaigns({ owner: 'alice', limit: 10 }).entries).toHaveLength(1)
    table.close()
  })

  it('replays the current state to a new subscriber, and undefined for an unknown session', async () => {
    const { table, supervisor, end } = createTable()
    table.startSession(supervisor, 'c1', 's1', 'alice')
    const events: string[] = []
    const subscription = table.subscribe({ sessionId: 's1' }, (e) => events.push(e.type))!
    expect(events).toEqual(['subscribed'])
    expect(table.subscribe({ sessionId: 'nope' }, () => {})).toBeUndefined()
    await end('s1')
    expect(events).toContain('status')
    subscription.unsubscribe()
    table.close()
  })
})
