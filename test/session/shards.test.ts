import { describe, expect, it } from 'vitest'
import { SimulatedClock } from 'xstate'
import { SHARD_SIZE, Shards } from '../../src/session/shards.ts'

const flushMicrotasks = () => new Promise<void>((resolve) => setImmediate(resolve))

describe('Shards', () => {
  it(`puts ${SHARD_SIZE} sessions in a shard, then opens another`, () => {
    const shards = new Shards({ clock: new SimulatedClock() })
    const first = shards.place()
    for (let i = 1; i < SHARD_SIZE; i++) expect(shards.place()).toBe(first)
    const second = shards.place()
    expect(second).not.toBe(first)
    expect(shards.count).toBe(2)
    shards.close()
  })

  it('stops a full shard once its last session has ended, but keeps the open one', async () => {
    const shards = new Shards({ clock: new SimulatedClock() })
    const placed = Array.from({ length: SHARD_SIZE + 1 }, () => shards.place())
    const full = placed[0]!
    for (const shard of placed.slice(0, SHARD_SIZE)) shards.release(shard)
    await flushMicrotasks()
    expect(full.actor.getSnapshot().status).toBe('stopped')
    expect(shards.count).toBe(1)
    const open = placed[SHARD_SIZE]!
    shards.release(open)
    await flushMicrotasks()
    expect(open.actor.getSnapshot().status).toBe('active')
    shards.close()
    await flushMicrotasks()
    expect(open.actor.getSnapshot().status).toBe('stopped')
    expect(shards.count).toBe(0)
  })

  it('inspects every shard only while an observer is attached', () => {
    const shards = new Shards({ clock: new SimulatedClock() })
    const shard = shards.place()
    const subscription = shards.inspect({ next: () => {} })
    expect(shard.inspection).toBeDefined()
    expect(shards.place().inspection).toBeDefined()
    subscription.unsubscribe()
    expect(shard.inspection).toBeUndefined()
    shards.close()
  })
})
