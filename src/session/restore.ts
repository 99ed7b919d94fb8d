/**
 * The paced restore of linked campaigns after a start: at most `concurrency` launches in flight,
 * a launch being a session on its way from its start to `ready` (or to a QR, or its end). WAHA,
 * the most mature peer, staggers its restore the same way; a Chromium per campaign at once would
 * starve the machine and time them all out.
 *
 * A campaign someone asks for meanwhile leaves the queue (`take`): the request starts it at once,
 * and it holds a launch slot until it settles, so restored launches never exceed `concurrency`.
 *
 * @module
 */

export type RestoreLaunch =
  /** The session started (or joined): its id. */
  | { started: string }
  /** Nothing to do for it (no longer linked, already live, not the owner's any more). */
  | { skipped: true }
  /** The service is full (`MAX_SESSIONS`) or shutting down: restore stops here. */
  | { stop: true }

export interface RestoreOptions {
  concurrency: number
  /** Starts the campaign's session with its saved login. */
  launch(campaignId: string): RestoreLaunch
  /** Told once, when nothing is left to launch and every launch has settled. */
  onDone?(progress: RestoreProgress): void
  /**
   * Runs the rest of a pump later, after other work (default: `setImmediate`): at most
   * `LAUNCHES_PER_TURN` launches happen in one turn of the event loop, so a restore at a high
   * concurrency never holds up the requests arriving meanwhile.
   */
  defer?(next: () => void): void
}

/** Launches in one turn of the event loop, at most. */
export const LAUNCHES_PER_TURN = 10

export interface RestoreProgress {
  /** Linked campaigns wanted `running` when the service started. */
  total: number
  /** Started by the restore so far. */
  started: number
  /** Still queued. */
  pending: number
  /** Launches not settled yet (restored, or asked for meanwhile). */
  inFlight: number
  /** Queued campaigns left unrestored because the service was full or stopping. */
  abandoned: number
  done: boolean
}

export class RestoreQueue {
  private readonly queue: string[]
  private head = 0
  /** Campaigns taken out of the queue by a request (skipped when their turn comes). */
  private readonly taken = new Set<string>()
  private readonly queued: Set<string>
  /** Launches in flight, by sessionId. */
  private readonly inFlight = new Set<string>()
  private started = 0
  private abandoned = 0
  private stopped = false
  private finished = false
  private deferred = false

  constructor(
    campaignIds: readonly string[],
    private readonly options: RestoreOptions
  ) {
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new RangeError(`concurrency must be a positive integer (got ${options.concurrency})`)
    }
    this.queue = [...campaignIds]
    this.queued = new Set(campaignIds)
  }

  /** Launches up to the concurrency; call once at start, then `settled` keeps it going. */
  pump(): void {
    let launched = 0
    while (!this.stopped && this.inFlight.size < this.options.concurrency) {
      if (launched === LAUNCHES_PER_TURN) {
        this.pumpLater()
        return
      }
      const campaignId = this.next()
      if (campaignId === undefined) break
      const launch = this.options.launch(campaignId)
      launched++
      if ('started' in launch) {
        this.started++
        this.inFlight.add(launch.started)
      } else if ('stop' in launch) {
        this.abandoned += 1 + this.pendingCount()
        this.stop()
      }
    }
    this.finishIfDone()
  }

  /**
   * A request for `campaignId` arrived: if it is still queued, it leaves the queue and its session
   * (once started, `hold`) takes a launch slot. True if it was queued.
   */
  take(campaignId: string): boolean {
    if (!this.queued.has(campaignId) || this.taken.has(campaignId)) return false
    this.taken.add(campaignId)
    return true
  }

  /** Counts a session started for a taken campaign as a launch in flight. */
  hold(sessionId: string): void {
    if (!this.finished) this.inFlight.add(sessionId)
  }

  /** A launch settled (its session reached a QR, `ready`, or ended): the next one may go. */
  settled(sessionId: string): void {
    if (!this.inFlight.delete(sessionId)) return
    this.pump()
  }

  /** Launches nothing more (shutdown). */
  stop(): void {
    if (this.stopped) return
    this.stopped = true
    this.inFlight.clear()
    this.finishIfDone()
  }

  progress(): RestoreProgress {
    return {
      total: this.queue.length,
      started: this.started,
      pending: this.stopped ? 0 : this.pendingCount(),
      inFlight: this.inFlight.size,
      abandoned: this.abandoned,
      done: this.finished,
    }
  }

  private pumpLater(): void {
    if (this.deferred) return
    this.deferred = true
    const defer = this.options.defer ?? ((next: () => void) => void setImmediate(next))
    defer(() => {
      this.deferred = false
      this.pump()
    })
  }

  private next(): string | undefined {
    while (this.head < this.queue.length) {
      const campaignId = this.queue[this.head++]!
      this.queued.delete(campaignId)
      if (!this.taken.delete(campaignId)) return campaignId
    }
    return undefined
  }

  private pendingCount(): number {
    return this.queue.length - this.head - this.taken.size
  }

  private finishIfDone(): void {
    if (this.finished) return
    if (!this.stopped && (this.pendingCount() > 0 || this.inFlight.size > 0)) return
    this.finished = true
    this.taken.clear()
    this.queued.clear()
    this.options.onDone?.(this.progress())
  }
}
