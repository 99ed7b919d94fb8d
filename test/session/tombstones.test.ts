import { describe, expect, it } from 'vitest'
import { Tombstones, tombstoneOf, type Tombstone } from '../../src/session/tombstones.ts'

function ended(sessionId: string, endedAt: number, campaignId = 'c1'): Tombstone {
  return tombstoneOf(
    { campaignId, sessionId, reason: 'cleanup_requested', failure: null, history: [] },
    endedAt,
    undefined
  )
}

describe('Tombstones', () => {
  it('evicts the oldest first past the count bound, telling which', () => {
    const tombstones = new Tombstones({ maxTombstones: 2, tombstoneTtlMs: 60_000 })
    const evicted: string[] = []
    for (const id of ['s1', 's2', 's3', 's4']) {
      tombstones.add(ended(id, 1_000), 1_000, (t) => evicted.push(t.sessionId))
    }
    expect(evicted).toEqual(['s1', 's2'])
    expect(tombstones.size).toBe(2)
    expect(tombstones.get('s1')).toBeUndefined()
    expect(tombstones.get('s4')?.status).toBe('cleaned')
  })

  it('evicts those older than the age bound when the next one is added', () => {
    const tombstones = new Tombstones({ maxTombstones: 100, tombstoneTtlMs: 1_000 })
    const evicted: string[] = []
    tombstones.add(ended('old', 0), 0, (t) => evicted.push(t.sessionId))
    tombstones.add(ended('new', 5_000), 5_000, (t) => evicted.push(t.sessionId))
    expect(evicted).toEqual(['old'])
    expect(tombstones.size).toBe(1)
  })

  it('stays bounded, its queue included, over many more sessions than the bound', () => {
    const tombstones = new Tombstones({ maxTombstones: 10, tombstoneTtlMs: 60_000 })
    let evicted = 0
    for (let i = 0; i < 10_000; i++) tombstones.add(ended(`s${i}`, 0), 0, () => evicted++)
    expect(tombstones.size).toBe(10)
    expect(evicted).toBe(9_990)
    expect((tombstones as unknown as { order: string[] }).order.length).toBeLessThan(3_000)
  })
})

describe('tombstoneOf', () => {
  it('remembers a session by how it ended: timedOut or failed over the cleaning that followed', () => {
    const tombstone = tombstoneOf(
      {
        campaignId: 'c1',
        sessionId: 's1',
        reason: 'scan_timeout',
        failure: null,
        history: [
          { status: 'awaitingScan', at: 1 },
          { status: 'timedOut', at: 2, reason: 'scan_timeout' },
          { status: 'cleaning', at: 3 },
          { status: 'cleaned', at: 4 },
        ],
      },
      5,
      undefined
    )
    expect(tombstone).toMatchObject({ status: 'timedOut', reason: 'scan_timeout', endedAt: 5 })
  })

  it('turns an actor bug into an engine_failed failure without saying more than "internal error"', () => {
    const tombstone = tombstoneOf(
      { campaignId: 'c1', sessionId: 's1', reason: null, failure: null, history: [] },
      7,
      new Error('secret stack')
    )
    expect(tombstone).toMatchObject({
      status: 'failed',
      reason: 'engine_failed',
      failure: { code: 'engine_failed', detail: 'internal error' },
      history: [{ status: 'failed', at: 7, reason: 'engine_failed', detail: 'internal error' }],
    })
  })
})
