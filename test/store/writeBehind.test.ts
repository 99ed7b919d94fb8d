/**
 * The write-behind queue on its own, in simulated time, over a database stand-in that can be
 * made to fail: the lag, coalescing, the bound, retries and what is logged.
 */
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { systemClock } from '../../src/clock.ts'
import {
  DEFAULT_WRITE_BEHIND,
  type BatchReport,
  type WriteBehindOptions,
} from '../../src/store/campaignStore.ts'
import { StoreClosedError } from '../../src/store/errors.ts'
import { WriteBehind } from '../../src/store/writeBehind.ts'

interface Change {
  key: string
  value: number
}

class PermanentError extends Error {}

function setup(
  options: Partial<WriteBehindOptions> = {},
  /** Called as a transaction begins, before it commits. */
  onWrite?: (changes: Change[]) => void
) {
  const written: Change[][] = []
  const reports: BatchReport[] = []
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = []
  let failure: Error | undefined
  /** Keys the stand-in refuses for good. */
  const poisoned = new Set<string>()
  const queue = new WriteBehind<Change>({
    options: { ...DEFAULT_WRITE_BEHIND, lagMs: 50, ...options },
    clock: systemClock,
    logger: pino(
      { level: 'info' },
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(JSON.parse(String(chunk)))
          done()
        },
      })
    ),
    location: 'the test database',
    keyOf: (change) => change.key,
    merge: (_queued, newer) => newer,
    async write(changes) {
      onWrite?.(changes)
      await Promise.resolve()
      if (failure) throw failure
      const bad = changes.find((change) => poisoned.has(change.key))
      if (bad) throw new PermanentError(`constraint on ${bad.key}`)
      written.push(changes)
    },
    isPermanent: (error) => error instanceof PermanentError,
    describe: (change) => ({ key: change.key }),
    onBatch: (report) => reports.push(report),
  })
  return {
    queue,
    written,
    reports,
    lines,
    poisoned,
    failWith: (error: Error | undefined) => (failure = error),
  }
}

describe('WriteBehind', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 })
  })

  afterEach(() => {
    expect(vi.getTimerCount()).toBe(0)
    vi.useRealTimers()
  })

  it('writes a change lagMs after it was queued, with the changes queued meanwhile', async () => {
    const { queue, written, reports } = setup({ lagMs: 50 })
    queue.enqueue({ key: 'a', value: 1 })
    await vi.advanceTimersByTimeAsync(30)
    queue.enqueue({ key: 'b', value: 1 })
    expect(written).toEqual([])
    await vi.advanceTimersByTimeAsync(20)
    expect(written).toEqual([
      [
        { key: 'a', value: 1 },
        { key: 'b', value: 1 },
      ],
    ])
    expect(reports[0]).toMatchObject({ rows: 2, lagsMs: [50, 20] })
  })

  it('coalesces the changes of one record into its newest', async () => {
    const { queue, written } = setup()
    for (let value = 1; value <= 100; value++) queue.enqueue({ key: 'a', value })
    expect(queue.stats().queued).toBe(1)
    await vi.advanceTimersByTimeAsync(50)
    expect(written).toEqual([[{ key: 'a', value: 100 }]])
  })

  it('writes at once when a full batch is queued, the rest in later transactions', async () => {
    const { queue, written } = setup({ lagMs: 1_000, batchRows: 3 })
    for (let i = 0; i < 7; i++) queue.enqueue({ key: `k${i}`, value: i })
    await vi.advanceTimersByTimeAsync(0)
    expect(written.map((batch) => batch.length)).toEqual([3])
    // The backlog does not wait for the lag: one transaction after another, yielding between.
    await vi.advanceTimersByTimeAsync(10)
    expect(written.map((batch) => batch.length)).toEqual([3, 3, 1])
  })

  it('writes several transactions at once with parallelBatches, a record in one of them at most', async () => {
    let concurrent = 0
    let most = 0
    let changedDuringRound = false
    const { queue, written } = setup({ lagMs: 1_000, batchRows: 2, parallelBatches: 3 }, () => {
      most = Math.max(most, ++concurrent)
      queueMicrotask(() => concurrent--)
      // A change to a record of the round in flight: it must wait for the next round.
      if (!changedDuringRound) {
        changedDuringRound = true
        queue.enqueue({ key: 'k0', value: 100 })
      }
    })
    for (let i = 0; i < 7; i++) queue.enqueue({ key: `k${i}`, value: i })
    await vi.advanceTimersByTimeAsync(0)
    expect(written.slice(0, 3).map((batch) => batch.map((change) => change.key))).toEqual([
      ['k0', 'k1'],
      ['k2', 'k3'],
      ['k4', 'k5'],
    ])
    expect(most).toBe(3)
    await vi.advanceTimersByTimeAsync(10)
    expect(written.slice(3)).toEqual([
      [
        { key: 'k6', value: 6 },
        { key: 'k0', value: 100 },
      ],
    ])
    expect(queue.stats().queued).toBe(0)
  })

  it('retries a failed batch with backoff, logs each failure, and loses nothing', async () => {
    const { queue, written, lines, failWith } = setup({ lagMs: 50, retryMaxMs: 400 })
    failWith(new Error('connection refused'))
    queue.enqueue({ key: 'a', value: 1 })
    await vi.advanceTimersByTimeAsync(50) // attempt 1 fails
    queue.enqueue({ key: 'a', value: 2 })
    queue.enqueue({ key: 'b', value: 1 })
    await vi.advanceTimersByTimeAsync(50 + 100 + 200 + 400) // attempts 2 to 5 fail
    expect(written).toEqual([])
    expect(queue.stats()).toMatchObject({ queued: 2, failing: 'connection refused' })
    expect(lines.map((line) => [line.level, line.attempt])).toEqual([
      [50, 1],
      [40, 2],
      [40, 3],
      [40, 4],
      [40, 5],
    ])
    expect(lines.map((line) => line.msg)).toContain(
      'store: writing to the test database failed; retrying in 400 ms'
    )

    failWith(undefined)
    await vi.advanceTimersByTimeAsync(400)
    expect(written).toEqual([
      [
        { key: 'a', value: 2 },
        { key: 'b', value: 1 },
      ],
    ])
    expect(queue.stats()).toMatchObject({ queued: 0, failing: null })
    expect(lines.at(-1)).toMatchObject({ level: 30, msg: expect.stringMatching(/succeed again/) })
  })

  it('at its bound, keeps coalescing queued records and counts the others as dropped', async () => {
    const { queue, written, lines, failWith } = setup({ maxQueued: 3, lagMs: 50 })
    failWith(new Error('disk full'))
    for (const key of ['a', 'b', 'c']) queue.enqueue({ key, value: 1 })
    queue.enqueue({ key: 'd', value: 1 })
    queue.enqueue({ key: 'e', value: 1 })
    queue.enqueue({ key: 'a', value: 2 })
    await vi.advanceTimersByTimeAsync(50) // a write fails: the batch is back in the queue
    queue.enqueue({ key: 'f', value: 1 })
    expect(queue.stats()).toMatchObject({ queued: 3, dropped: 3 })
    const full = lines.filter((line) => /queue is full/.test(line.msg))
    expect(full).toHaveLength(1)
    expect(full[0]).toMatchObject({ level: 50, key: 'd' })

    failWith(undefined)
    await queue.flush()
    expect(written.flat()).toEqual([
      { key: 'a', value: 2 },
      { key: 'b', value: 1 },
      { key: 'c', value: 1 },
    ])
    // Room again: the next change of a dropped record is kept (and written whole).
    queue.enqueue({ key: 'd', value: 2 })
    await queue.flush()
    expect(written.flat().at(-1)).toEqual({ key: 'd', value: 2 })
  })

  it('writes the rest of a batch one record at a time when one breaks a constraint', async () => {
    const { queue, written, lines, poisoned } = setup()
    poisoned.add('bad')
    for (const key of ['a', 'bad', 'b']) queue.enqueue({ key, value: 1 })
    await queue.flush()
    expect(written.flat().map((change) => change.key)).toEqual(['a', 'b'])
    expect(queue.stats()).toMatchObject({ queued: 0, rejected: 1, failing: null })
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 50, key: 'bad', err: 'constraint on bad' })
    )
  })

  it('flush rejects while the database fails; the changes stay queued', async () => {
    const { queue, failWith } = setup()
    failWith(new Error('connection refused'))
    queue.enqueue({ key: 'a', value: 1 })
    await expect(queue.flush()).rejects.toThrow('connection refused')
    expect(queue.stats().queued).toBe(1)
    failWith(undefined)
    await queue.flush()
    expect(queue.stats().queued).toBe(0)
  })

  it('writes everything at close and refuses changes after it', async () => {
    const { queue, written } = setup({ lagMs: 60_000 })
    queue.enqueue({ key: 'a', value: 1 })
    await queue.close(1_000)
    expect(written).toEqual([[{ key: 'a', value: 1 }]])
    expect(() => queue.enqueue({ key: 'b', value: 1 })).toThrow(StoreClosedError)
  })

  it('gives up at close after retrying for the timeout, saying how many records are lost', async () => {
    const { queue, lines, failWith } = setup({ lagMs: 10, retryMaxMs: 100 })
    failWith(new Error('connection refused'))
    queue.enqueue({ key: 'a', value: 1 })
    queue.enqueue({ key: 'b', value: 1 })
    const closed = queue.close(1_000).catch((error: unknown) => error)
    await vi.advanceTimersByTimeAsync(1_100)
    expect(String(await closed)).toMatch(
      /2 records could not be written to the test database before closing: connection refused/
    )
    expect(lines.at(-1)).toMatchObject({ level: 50, unsaved: 2 })
  })
})
