/**
 * Keeps this node's campaign leases, and fences itself when it cannot.
 *
 * WhatsApp cannot check a fencing token, so the real guarantee that two browsers never run one
 * login is timing: this node's engine of a campaign must be dead before its lease can expire.
 *
 * - The node reasons about a lease with its **monotonic** clock, from the moment it *sent* the
 *   acquisition or renewal that succeeded: the lease surely holds until `sent + TTL`, less a 1 %
 *   allowance for clock-rate drift.
 * - Leases are renewed every `TTL / 3`, all in one statement; a renewal still in flight is never
 *   doubled.
 * - **Self-fencing:** a lease not renewed by `sent + TTL·0.99 − killBound − margin` is given up
 *   here: `onLost` kills its engine (the forced phase only: there is no time for a graceful one),
 *   so the browser is gone before the lease can expire in the database.
 * - After a pause (SIGSTOP, a long GC, a frozen VM), the first thing any timer does is the check
 *   above: a lease it cannot prove valid is lost, before a renewal is even sent. A lease the
 *   database did not renew (expired, released, or taken at a higher epoch) is lost too.
 *
 * `checkLeaseTiming` refuses a configuration in which fencing could not happen in time.
 *
 * @module
 */
import type { Clock, TimerHandle } from '../clock.ts'
import {
  checkLeaseTiming,
  fenceAfterMs,
  renewIntervalMs,
  type LeaseTiming,
} from '../leaseTiming.ts'

export interface LeaseRenewer {
  renew(
    nodeId: string,
    held: ReadonlyArray<{ campaignId: string; epoch: number }>,
    ttlMs: number
  ): Promise<Set<string>>
}

export interface LeaseKeeperOptions extends LeaseTiming {
  nodeId: string
  table: LeaseRenewer
  /** A monotonic clock (`performance.now()`-based in production) and its timers. */
  clock: Clock
  /**
   * Leases given up: `fenced` (not renewed in time: kill the engine now) or `lost` (the database
   * says another epoch or nobody holds it). Their engines must stop; nothing of theirs may be
   * published or written afterwards.
   */
  onLost(campaignIds: string[], why: 'fenced' | 'lost'): void
  /** A renewal failed (the database is unreachable or slow): logged, fencing follows if it lasts. */
  onRenewalError?(error: unknown): void
}

interface HeldLease {
  epoch: number
  /** Monotonic time the acquisition or the last successful renewal was sent. */
  sentAt: number
}

export class LeaseKeeper {
  private readonly held = new Map<string, HeldLease>()
  private renewTimer: TimerHandle | undefined
  private fenceTimer: TimerHandle | undefined
  private renewing = false
  private stopped = false

  constructor(private readonly options: LeaseKeeperOptions) {
    const unsafe = checkLeaseTiming(options)
    if (unsafe) throw new RangeError(unsafe)
  }

  start(): void {
    this.stopped = false
    this.scheduleRenewal()
  }

  /** A lease won; `sentAt` is when its acquisition was sent (monotonic). */
  hold(campaignId: string, epoch: number, sentAt: number): void {
    this.held.set(campaignId, { epoch, sentAt })
    this.scheduleFencing()
  }

  /** The lease was released (or is no longer this node's concern). */
  drop(campaignId: string): void {
    this.held.delete(campaignId)
  }

  /** The epoch this node holds the campaign's lease at, while it can prove the lease valid. */
  epochOf(campaignId: string): number | undefined {
    const lease = this.held.get(campaignId)
    return lease && this.isProvable(lease) ? lease.epoch : undefined
  }

  /** When fencing of the campaign's lease starts (monotonic), unless a renewal succeeds first. */
  fencingDeadlineOf(campaignId: string): number | undefined {
    const lease = this.held.get(campaignId)
    return lease && lease.sentAt + fenceAfterMs(this.options)
  }

  /** The campaigns whose lease this node holds and can prove valid. */
  heldCampaigns(): string[] {
    return [...this.held].filter(([, lease]) => this.isProvable(lease)).map(([id]) => id)
  }

  get size(): number {
    return this.held.size
  }

  stop(): void {
    this.stopped = true
    if (this.renewTimer !== undefined) this.options.clock.clearTimeout(this.renewTimer)
    if (this.fenceTimer !== undefined) this.options.clock.clearTimeout(this.fenceTimer)
    this.renewTimer = this.fenceTimer = undefined
  }

  /** Sends one renewal of every lease still provable (after fencing those that are not). */
  async renewNow(): Promise<void> {
    this.fenceOverdue()
    if (this.renewing || this.held.size === 0) return
    this.renewing = true
    const sentAt = this.options.clock.now()
    const batch = [...this.held].map(([campaignId, { epoch }]) => ({ campaignId, epoch }))
    try {
      const renewed = await this.options.table.renew(this.options.nodeId, batch, this.options.ttlMs)
      const lost: string[] = []
      for (const { campaignId, epoch } of batch) {
        const lease = this.held.get(campaignId)
        // Dropped or re-acquired meanwhile: not this renewal's to judge.
        if (!lease || lease.epoch !== epoch) continue
        if (renewed.has(campaignId)) lease.sentAt = Math.max(lease.sentAt, sentAt)
        else {
          this.held.delete(campaignId)
          lost.push(campaignId)
        }
      }
      if (lost.length > 0) this.options.onLost(lost, 'lost')
    } catch (error) {
      this.options.onRenewalError?.(error)
    } finally {
      this.renewing = false
      this.scheduleFencing()
    }
  }

  private isProvable(lease: HeldLease): boolean {
    return this.options.clock.now() < lease.sentAt + fenceAfterMs(this.options)
  }

  /** Gives up every lease past its fencing deadline. */
  private fenceOverdue(): void {
    const fenced: string[] = []
    for (const [campaignId, lease] of this.held) {
      if (!this.isProvable(lease)) {
        this.held.delete(campaignId)
        fenced.push(campaignId)
      }
    }
    if (fenced.length > 0) this.options.onLost(fenced, 'fenced')
  }

  private scheduleRenewal(): void {
    if (this.stopped) return
    this.renewTimer = this.options.clock.setTimeout(() => {
      this.renewTimer = undefined
      void this.renewNow().finally(() => this.scheduleRenewal())
    }, renewIntervalMs(this.options))
  }

  /** Wakes at the earliest fencing deadline of the leases held. */
  private scheduleFencing(): void {
    if (this.fenceTimer !== undefined) this.options.clock.clearTimeout(this.fenceTimer)
    this.fenceTimer = undefined
    if (this.stopped || this.held.size === 0) return
    let earliest = Infinity
    for (const lease of this.held.values()) {
      earliest = Math.min(earliest, lease.sentAt + fenceAfterMs(this.options))
    }
    const wait = Math.max(0, earliest - this.options.clock.now())
    this.fenceTimer = this.options.clock.setTimeout(() => {
      this.fenceTimer = undefined
      this.fenceOverdue()
      this.scheduleFencing()
    }, wait)
  }
}
