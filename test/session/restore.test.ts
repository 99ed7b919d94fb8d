import { describe, expect, it } from 'vitest'
import {
  RestoreQueue,
  type RestoreLaunch,
  type RestoreProgress,
} from '../../src/session/restore.ts'

/** A queue whose launches start sessions named after their campaign, recorded in order. */
function queueOf(
  campaignIds: string[],
  concurrency: number,
  launch?: (id: string) => RestoreLaunch,
  deferred: Array<() => void> = []
) {
  const launched: string[] = []
  const done: RestoreProgress[] = []
  const queue = new RestoreQueue(campaignIds, {
    concurrency,
    defer: (next) => deferred.push(next),
    launch(campaignId) {
      launched.push(campaignId)
      return launch?.(campaignId) ?? { started: `s-${campaignId}` }
    },
    onDone: (progress) => done.push(progress),
  })
  return { queue, launched, done }
}

const ids = (n: number) => Array.from({ length: n }, (_, i) => `c${i}`)

describe('RestoreQueue', () => {
  it('never has more launches in flight than its concurrency, and launches the next as one settles', () => {
    const { queue, launched } = queueOf(ids(25), 10)
    queue.pump()
    expect(launched).toEqual(ids(10))
    expect(queue.progress()).toMatchObject({ inFlight: 10, pending: 15, started: 10 })
    queue.settled('s-c3')
    expect(launched).toHaveLength(11)
    expect(queue.progress().inFlight).toBe(10)
    // A session the queue did not launch settling changes nothing.
    queue.settled('s-unknown')
    queue.settled('s-c3')
    expect(launched).toHaveLength(11)
  })

  it('launches at most 10 in one turn of the event loop, the rest in the next turns', () => {
    const deferred: Array<() => void> = []
    const { queue, launched } = queueOf(ids(40), 25, undefined, deferred)
    queue.pump()
    expect(launched).toHaveLength(10)
    expect(deferred).toHaveLength(1)
    deferred.shift()!()
    expect(launched).toHaveLength(20)
    deferred.shift()!()
    expect(launched).toHaveLength(25)
    expect(deferred).toHaveLength(0)
    expect(queue.progress()).toMatchObject({ inFlight: 25, pending: 15 })
  })

  it('finishes once every launch settled, telling onDone once', () => {
    const { queue, launched, done } = queueOf(ids(3), 2)
    queue.pump()
    for (const id of ids(3)) queue.settled(`s-${id}`)
    expect(launched).toEqual(ids(3))
    expect(done).toEqual([
      { total: 3, started: 3, pending: 0, inFlight: 0, abandoned: 0, done: true },
    ])
    queue.pump()
    expect(done).toHaveLength(1)
  })

  it('takes a campaign someone asks for out of the queue; its session holds a slot until it settles', () => {
    const { queue, launched } = queueOf(ids(5), 2)
    queue.pump()
    expect(queue.take('c4')).toBe(true)
    expect(queue.take('c4')).toBe(false)
    // Already launched by the restore: not the queue's any more.
    expect(queue.take('c0')).toBe(false)
    expect(queue.take('never-queued')).toBe(false)
    queue.hold('s-asked-c4')
    queue.settled('s-c0')
    queue.settled('s-c1')
    // Two slots freed, one of them held by the asked-for session.
    expect(launched).toEqual(['c0', 'c1', 'c2'])
    queue.settled('s-asked-c4')
    queue.settled('s-c2')
    expect(launched).toEqual(['c0', 'c1', 'c2', 'c3'])
    queue.settled('s-c3')
    expect(queue.progress()).toMatchObject({ done: true, started: 4, pending: 0 })
  })

  it('skips a campaign there is nothing to do for, without holding a slot', () => {
    const { queue, launched } = queueOf(ids(4), 1, (id) =>
      id === 'c1' || id === 'c2' ? { skipped: true } : { started: `s-${id}` }
    )
    queue.pump()
    expect(launched).toEqual(['c0'])
    queue.settled('s-c0')
    expect(launched).toEqual(['c0', 'c1', 'c2', 'c3'])
    expect(queue.progress()).toMatchObject({ started: 2, inFlight: 1 })
  })

  it('stops at the first launch the service refuses (full or stopping) and counts what is left', () => {
    const { queue, launched, done } = queueOf(ids(10), 5, (id) =>
      id === 'c3' ? { stop: true } : { started: `s-${id}` }
    )
    queue.pump()
    expect(launched).toEqual(['c0', 'c1', 'c2', 'c3'])
    expect(done).toEqual([
      { total: 10, started: 3, pending: 0, inFlight: 0, abandoned: 7, done: true },
    ])
    queue.settled('s-c0')
    expect(launched).toHaveLength(4)
  })

  it('launches nothing more once stopped (shutdown)', () => {
    const { queue, launched, done } = queueOf(ids(10), 2)
    queue.pump()
    queue.stop()
    queue.settled('s-c0')
    expect(launched).toEqual(['c0', 'c1'])
    expect(done).toHaveLength(1)
    expect(queue.take('c5')).toBe(false)
  })

  it('is done at once with nothing to restore', () => {
    const { queue, done } = queueOf([], 2)
    queue.pump()
    expect(done).toEqual([
      { total: 0, started: 0, pending: 0, inFlight: 0, abandoned: 0, done: true },
    ])
  })

  it('refuses a concurrency that is not a positive integer', () => {
    expect(() => queueOf(ids(1), 0)).toThrow(RangeError)
    expect(() => queueOf(ids(1), 1.5)).toThrow(RangeError)
  })
})
