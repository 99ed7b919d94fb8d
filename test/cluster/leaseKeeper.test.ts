/**
 * The lease keeper's timing, on simulated time: renewals every TTL / 3, self-fencing before a
 * lease can expire when renewals fail, a pause noticed before anything is sent, leases the
 * database did not renew given up, and a configuration with no room to fence refused.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { systemClock } from '../../src/clock.ts'
import { LeaseKeeper, type LeaseRenewer } from '../../src/cluster/leaseKeeper.ts'
import { checkLeaseTiming, fenceAfterMs } from '../../src/leaseTiming.ts'

const TIMING = { ttlMs: 15_000, killBoundMs: 5_000, marginMs: 2_000 }

/** A database that renews what it is told to, or hangs, or refuses some leases. */
function database() {
  const calls: Array<{ at: number; campaignIds: string[] }> = []
  let mode: 'renews' | 'hangs' | 'fails' = 'renews'
  const refused = new Set<string>()
  const table: LeaseRenewer = {
    renew(_nodeId, held) {
      calls.push({ at: Date.now(), campaignIds: held.map((lease) => lease.campaignId) })
      if (mode === 'hangs') return new Promise(() => {})
      if (mode === 'fails') return Promise.reject(new Error('connection refused'))
      return Promise.resolve(
        new Set(held.map((lease) => lease.campaignId).filter((id) => !refused.has(id)))
      )
    },
  }
  return {
    table,
    calls,
    set: (next: typeof mode) => (mode = next),
    refuse: (campaignId: string) => refused.add(campaignId),
  }
}

function keeper(db: ReturnType<typeof database>) {
  const lost: Array<{ at: number; campaignIds: string[]; why: string }> = []
  const errors: unknown[] = []
  const keeper = new LeaseKeeper({
    ...TIMING,
    nodeId: 'a',
    table: db.table,
    clock: systemClock,
    onLost: (campaignIds, why) => lost.push({ at: Date.now(), campaignIds, why }),
    onRenewalError: (error) => errors.push(error),
  })
  keeper.start()
  return { keeper, lost, errors }
}

let start = 0
beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 })
  start = Date.now()
})
afterEach(() => vi.useRealTimers())

describe('LeaseKeeper', () => {
  it('renews every lease in one call every TTL / 3 and keeps them while the database renews', async () => {
    const db = database()
    const { keeper: k, lost } = keeper(db)
    k.hold('c1', 1, Date.now())
    k.hold('c2', 4, Date.now())
    await vi.advanceTimersByTimeAsync(60_000)
    expect(db.calls.map((call) => call.at - start)).toEqual(
      Array.from({ length: 12 }, (_, i) => (i + 1) * 5_000)
    )
    expect(db.calls.every((call) => call.campaignIds.join() === 'c1,c2')).toBe(true)
    expect(lost).toEqual([])
    expect(k.epochOf('c2')).toBe(4)
    k.stop()
  })

  it('fences a lease it cannot renew before it can expire: TTL·0.99 − kill bound − margin after the last renewal sent', async () => {
    const db = database()
    const { keeper: k, lost } = keeper(db)
    k.hold('c1', 1, Date.now())
    await vi.advanceTimersByTimeAsync(5_000) // renewed at +5 s
    db.set('hangs')
    await vi.advanceTimersByTimeAsync(30_000)
    const deadline = 5_000 + fenceAfterMs(TIMING)
    expect(lost).toEqual([{ at: start + deadline, campaignIds: ['c1'], why: 'fenced' }])
    // Killing takes at most the kill bound: the engine is gone before the lease expires.
    expect(deadline + TIMING.killBoundMs).toBeLessThan(5_000 + TIMING.ttlMs)
    expect(k.epochOf('c1')).toBeUndefined()
    k.stop()
  })

  it('fences the same way when renewals fail at once (database unreachable), reporting each failure', async () => {
    const db = database()
    const { keeper: k, lost, errors } = keeper(db)
    k.hold('c1', 1, Date.now())
    db.set('fails')
    await vi.advanceTimersByTimeAsync(20_000)
    expect(lost).toEqual([{ at: start + fenceAfterMs(TIMING), campaignIds: ['c1'], why: 'fenced' }])
    expect(errors.length).toBeGreaterThanOrEqual(1)
    k.stop()
  })

  it('after a pause, gives up what it cannot prove before sending any renewal', async () => {
    const db = database()
    const { keeper: k, lost } = keeper(db)
    k.hold('c1', 1, Date.now())
    await vi.advanceTimersByTimeAsync(4_999)
    // The process is stopped for 30 s: no timer runs, the clock moves on.
    vi.setSystemTime(Date.now() + 30_000)
    await vi.advanceTimersByTimeAsync(1)
    expect(lost).toEqual([{ at: expect.any(Number), campaignIds: ['c1'], why: 'fenced' }])
    expect(db.calls).toEqual([])
    k.stop()
  })

  it('gives up a lease the database did not renew (expired, released, or taken at a higher epoch)', async () => {
    const db = database()
    const { keeper: k, lost } = keeper(db)
    k.hold('c1', 1, Date.now())
    k.hold('c2', 1, Date.now())
    db.refuse('c2')
    await vi.advanceTimersByTimeAsync(5_000)
    expect(lost).toEqual([{ at: start + 5_000, campaignIds: ['c2'], why: 'lost' }])
    expect(k.epochOf('c1')).toBe(1)
    expect(k.size).toBe(1)
    k.stop()
  })

  it('forgets a dropped lease: no renewal, no fencing', async () => {
    const db = database()
    const { keeper: k, lost } = keeper(db)
    k.hold('c1', 1, Date.now())
    k.drop('c1')
    db.set('hangs')
    await vi.advanceTimersByTimeAsync(60_000)
    expect(lost).toEqual([])
    expect(db.calls).toEqual([])
    k.stop()
  })

  it('stops its timers on stop', async () => {
    const db = database()
    const { keeper: k } = keeper(db)
    k.hold('c1', 1, Date.now())
    k.stop()
    expect(vi.getTimerCount()).toBe(0)
  })
})

describe('checkLeaseTiming', () => {
  it('accepts the defaults and refuses a TTL with no room to fence, naming what to change', () => {
    expect(checkLeaseTiming(TIMING)).toBeNull()
    const unsafe = checkLeaseTiming({ ttlMs: 9_000, killBoundMs: 5_000 })
    expect(unsafe).toMatch(/LEASE_TTL_MS 9000 leaves no time to fence/)
    expect(unsafe).toMatch(/set LEASE_TTL_MS to at least 10660/)
    expect(checkLeaseTiming({ ttlMs: 10_660, killBoundMs: 5_000 })).toBeNull()
    expect(checkLeaseTiming({ ttlMs: 10_600, killBoundMs: 5_000 })).not.toBeNull()
    expect(
      () =>
        new LeaseKeeper({
          ttlMs: 9_000,
          killBoundMs: 5_000,
          nodeId: 'a',
          table: database().table,
          clock: systemClock,
          onLost: () => {},
        })
    ).toThrow(RangeError)
  })
})
