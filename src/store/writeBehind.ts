/**
 * The write-behind queue: changes are queued at once (the caller never waits on the database),
 * coalesced per record, and written in batches, one transaction per batch, at most `lagMs` after
 * the oldest queued change. One batch is written at a time, so a newer change of a record is
 * always written after an older one.
 *
 * Failures: a batch the database refuses for good (a constraint) is written again record by
 * record, and the records it still refuses are logged and counted (`rejected`); any other failure
 * (the database is unreachable, the disk is full) puts the batch back and retries it with
 * backoff, logging each failed attempt. Nothing is dropped silently.
 *
 * The bound: at most `maxQueued` records are queued or being written. Since changes coalesce per
 * record (a session, a campaign), that is only reached while writes fail; then a change to a
 * record not yet queued is counted in `dropped` (logged once per failure episode) and not queued,
 * while every queued record keeps taking its newest changes. Saves are whole records, so a dropped
 * record is written in full with its next change.
 *
 * @module
 */
import { delay, type Clock, type TimerHandle } from '../clock.ts'
import type { Logger } from '../logger.ts'
import type { BatchReport, WriteBehindOptions } from './campaignStore.ts'
import { StoreClosedError, messageOf } from './errors.ts'

export interface WriteBehindDeps<Change> {
  options: WriteBehindOptions
  clock: Clock
  logger: Logger
  /** Where the data goes, for messages. */
  location: string
  keyOf(change: Change): string
  /** One change that does what `queued` and then `newer` would do. */
  merge(queued: Change, newer: Change): Change
  /** Writes the changes in one transaction. */
  write(changes: Change[]): Promise<void>
  /** True for an error retrying cannot fix (a constraint violation). */
  isPermanent(error: unknown): boolean
  /** Log fields naming a change's record (never its whole content). */
  describe(change: Change): Record<string, unknown>
  onBatch?: (report: BatchReport) => void
}

interface Queued<Change> {
  change: Change
  /** When the oldest change not yet written was queued. */
  since: number
}

export class WriteBehind<Change> {
  private readonly queued = new Map<string, Queued<Change>>()
  private inFlight = 0
  private running: Promise<void> | undefined
  private timer: TimerHandle | undefined
  private timerDueAt = 0
  private closed = false
  private failures = 0
  private dropLogged = false
  private dropped = 0
  private rejected = 0
  private failing: string | null = null

  constructor(private readonly deps: WriteBehindDeps<Change>) {}

  /** Queues a change; returns at once. */
  enqueue(change: Change): void {
    if (this.closed) throw new StoreClosedError(this.deps.location)
    const key = this.deps.keyOf(change)
    const existing = this.queued.get(key)
    if (existing) {
      existing.change = this.deps.merge(existing.change, change)
      return
    }
    if (this.queued.size + this.inFlight >= this.deps.options.maxQueued) {
      this.dropped++
      if (!this.dropLogged) {
        this.dropLogged = true
        this.deps.logger.error(
          { ...this.deps.describe(change), queued: this.queued.size + this.inFlight },
          `store: the write queue is full (${this.deps.options.maxQueued} records) while writes to ${this.deps.location} fail: changes to records not yet queued are not kept until a write succeeds`
        )
      }
      return
    }
    this.queued.set(key, { change, since: this.deps.clock.now() })
    this.schedule()
  }

  /** Writes everything queued before the call; rejects with the database's error. */
  async flush(): Promise<void> {
    while (this.running) await this.running.catch(() => undefined)
    if (this.queued.size === 0) return
    this.cancelTimer()
    await this.start()
  }

  /**
   * Refuses further changes and writes what is queued, retrying for up to `timeoutMs`. Rejects if
   * some could not be written by then (they are logged with their count).
   */
  async close(timeoutMs: number): Promise<void> {
    this.closed = true
    this.cancelTimer()
    const deadline = this.deps.clock.now() + timeoutMs
    for (;;) {
      try {
        await this.flush()
        return
      } catch (error) {
        if (this.deps.clock.now() >= deadline) {
          const unsaved = this.queued.size
          this.deps.logger.error(
            { unsaved, err: messageOf(error) },
            `store: ${unsaved} records could not be written to ${this.deps.location} before closing`
          )
          throw new Error(
            `${unsaved} records could not be written to ${this.deps.location} before closing: ${messageOf(error)}`,
            { cause: error }
          )
        }
        await delay(this.deps.clock, this.retryDelay())
      }
    }
  }

  stats(): { queued: number; dropped: number; rejected: number; failing: string | null } {
    return {
      queued: this.queued.size + this.inFlight,
      dropped: this.dropped,
      rejected: this.rejected,
      failing: this.failing,
    }
  }

  /** Arms the timer for the next batch: at the lag, or at once for a full batch, or at backoff. */
  private schedule(): void {
    if (this.closed || this.running || this.queued.size === 0) return
    const now = this.deps.clock.now()
    const { lagMs, batchRows } = this.deps.options
    let dueAt: number
    if (this.failures > 0) dueAt = now + this.retryDelay()
    else if (this.queued.size >= batchRows) dueAt = now
    // The first queued record is the oldest (records put back after a failure wait on backoff).
    else dueAt = this.queued.values().next().value!.since + lagMs
    if (this.timer !== undefined) {
      if (this.timerDueAt <= dueAt) return
      this.cancelTimer()
    }
    this.timerDueAt = dueAt
    this.timer = this.deps.clock.setTimeout(
      () => {
        this.timer = undefined
        if (!this.running) this.start().catch(() => undefined) // logged where it failed
      },
      Math.max(0, dueAt - now)
    )
  }

  private cancelTimer(): void {
    if (this.timer === undefined) return
    this.deps.clock.clearTimeout(this.timer)
    this.timer = undefined
  }

  private start(): Promise<void> {
    const run = this.drain().finally(() => {
      this.running = undefined
      this.schedule()
    })
    this.running = run
    return run
  }

  /**
   * Writes what is queued, in rounds of up to `parallelBatches` transactions. A round's batches
   * hold distinct records (each record is queued once); a record changed during a round waits for
   * the next one, so its changes are written in order.
   */
  private async drain(): Promise<void> {
    const { batchRows, parallelBatches } = this.deps.options
    while (this.queued.size > 0) {
      const batches: Array<Array<Queued<Change> & { key: string }>> = []
      while (batches.length < Math.max(1, parallelBatches) && this.queued.size > 0) {
        batches.push(this.take(batchRows))
      }
      this.inFlight = batches.reduce((sum, batch) => sum + batch.length, 0)
      const results = await Promise.allSettled(
        batches.map(async (batch) => {
          const startedAt = performance.now()
          await this.writeBatch(batch.map((entry) => entry.change))
          this.report(batch, performance.now() - startedAt)
        })
      )
      this.inFlight = 0
      let failure: unknown
      results.forEach((result, index) => {
        if (result.status === 'rejected') {
          this.putBack(batches[index]!)
          failure ??= result.reason
        }
      })
      if (failure !== undefined) {
        this.failed(failure)
        throw failure
      }
      this.recovered()
      // Let other work run between transactions (SQLite's are synchronous).
      if (this.queued.size > 0) {
        await delay(this.deps.clock, 0)
      }
    }
  }

  private async writeBatch(changes: Change[]): Promise<void> {
    try {
      await this.deps.write(changes)
      return
    } catch (error) {
      if (!this.deps.isPermanent(error)) throw error
      if (changes.length === 1) return this.reject(changes[0]!, error)
    }
    // One record breaks a constraint: write them one by one to keep every other record.
    for (const change of changes) {
      try {
        await this.deps.write([change])
      } catch (error) {
        if (!this.deps.isPermanent(error)) throw error
        this.reject(change, error)
      }
    }
  }

  private reject(change: Change, error: unknown): void {
    this.rejected++
    this.deps.logger.error(
      { ...this.deps.describe(change), err: messageOf(error) },
      `store: ${this.deps.location} refused a record; it is not retried`
    )
  }

  private take(count: number): Array<Queued<Change> & { key: string }> {
    const batch: Array<Queued<Change> & { key: string }> = []
    for (const [key, entry] of this.queued) {
      if (batch.length === count) break
      batch.push({ key, ...entry })
    }
    for (const { key } of batch) this.queued.delete(key)
    return batch
  }

  /** Back into the queue after a failed batch, merged under any newer change of the same record. */
  private putBack(batch: Array<Queued<Change> & { key: string }>): void {
    for (const { key, change, since } of batch) {
      const newer = this.queued.get(key)
      this.queued.set(
        key,
        newer ? { change: this.deps.merge(change, newer.change), since } : { change, since }
      )
    }
  }

  private failed(error: unknown): void {
    this.failures++
    this.failing = messageOf(error)
    const fields = { err: this.failing, attempt: this.failures, queued: this.queued.size }
    const message = `store: writing to ${this.deps.location} failed; retrying in ${this.retryDelay()} ms`
    if (this.failures === 1) this.deps.logger.error(fields, message)
    else this.deps.logger.warn(fields, message)
  }

  private recovered(): void {
    if (this.failures > 0) {
      this.deps.logger.info(
        { attempts: this.failures + 1 },
        `store: writes to ${this.deps.location} succeed again`
      )
    }
    this.failures = 0
    this.failing = null
    this.dropLogged = false
  }

  private retryDelay(): number {
    const { lagMs, retryMaxMs } = this.deps.options
    return Math.min(retryMaxMs, Math.max(1, lagMs) * 2 ** Math.max(0, this.failures - 1))
  }

  private report(batch: Array<Queued<Change>>, durationMs: number): void {
    if (!this.deps.onBatch) return
    const now = this.deps.clock.now()
    this.deps.onBatch({
      rows: batch.length,
      durationMs,
      lagsMs: batch.map((entry) => now - entry.since),
    })
  }
}
