/**
 * This node's campaign leases: acquired before a campaign's engine launches here, renewed by the
 * `LeaseKeeper`, released once the engine is gone, and the fence (owner and epoch) every write
 * and every published event of the campaign carries.
 *
 * - `ensure` takes the lease, or proves this node still holds it. When it took over a lease that
 *   expired (its node died or was cut off, and may be paused rather than dead), the engine must
 *   not launch before `killBound + margin` has passed: the old owner, waking up at the expiry,
 *   needs that long to kill its browser. A released lease (its engine is gone) starts at once.
 * - A lease this node cannot prove valid by its monotonic clock is lost: `isProvable` says so at
 *   once, before the keeper's timer has even run (after a pause, an engine's event may come
 *   first).
 * - The last epoch held per campaign stays known after a release (`fenceOf`), so the session's
 *   last record, written behind, still carries it; bounded (the oldest are forgotten).
 *
 * @module
 */
import type { Clock } from '../clock.ts'
import type { LeaseHolder, LeaseTable, NodeAddress } from './leaseTable.ts'
import { LEASE_MARGIN_MS, type LeaseTiming } from '../leaseTiming.ts'
import { LeaseKeeper } from './leaseKeeper.ts'

export type EnsuredLease =
  | {
      ok: true
      epoch: number
      /** Wait this long before launching an engine. */
      waitMs: number
      /** Another node ran the campaign last (its engine is gone: the lease says so). */
      takeover: boolean
    }
  | { ok: false; heldBy: LeaseHolder }

export interface Fence {
  nodeId: string
  epoch: number
}

export interface CampaignLeasesOptions extends LeaseTiming {
  node: NodeAddress
  table: LeaseTable
  /**
   * Where renewals go: a connection of their own, so that a renewal never waits behind the
   * lookups and acquisitions of a burst of requests (a late renewal fences a healthy node).
   */
  renewals?: Pick<LeaseTable, 'renew'>
  /** Monotonic (see `monotonicClock`). */
  clock: Clock
  /** Leases this node gave up: fenced (not renewed in time) or lost (the database moved on). */
  onLost(campaignIds: string[], why: 'fenced' | 'lost'): void
  onRenewalError?(error: unknown): void
  /** Fences remembered after their release, at most. */
  maxRemembered?: number
}

export class CampaignLeases {
  readonly keeper: LeaseKeeper
  /** The last epoch this node held per campaign (held or released), oldest first. */
  private readonly epochs = new Map<string, number>()
  /** Monotonic time before which the campaign's engine must not launch (after a takeover). */
  private readonly notBefore = new Map<string, number>()
  /** Campaigns whose lease this node took from another node, until their engine launches. */
  private readonly takenOver = new Set<string>()
  private readonly acquiring = new Map<string, Promise<EnsuredLease>>()
  private readonly marginMs: number

  constructor(private readonly options: CampaignLeasesOptions) {
    this.marginMs = options.marginMs ?? LEASE_MARGIN_MS
    this.keeper = new LeaseKeeper({
      ttlMs: options.ttlMs,
      killBoundMs: options.killBoundMs,
      marginMs: this.marginMs,
      nodeId: options.node.nodeId,
      table: options.renewals ?? options.table,
      clock: options.clock,
      onLost: (campaignIds, why) => {
        for (const campaignId of campaignIds) {
          this.notBefore.delete(campaignId)
          this.takenOver.delete(campaignId)
        }
        options.onLost(campaignIds, why)
      },
      ...(options.onRenewalError ? { onRenewalError: options.onRenewalError } : {}),
    })
  }

  get node(): NodeAddress {
    return this.options.node
  }

  get held(): number {
    return this.keeper.size
  }

  start(): void {
    this.keeper.start()
  }

  stop(): void {
    this.keeper.stop()
  }

  /** Takes the campaign's lease, or proves this node holds it; concurrent calls share one query. */
  ensure(campaignId: string): Promise<EnsuredLease> {
    const epoch = this.keeper.epochOf(campaignId)
    if (epoch !== undefined) {
      return Promise.resolve({
        ok: true,
        epoch,
        waitMs: this.waitOf(campaignId),
        takeover: this.takenOver.has(campaignId),
      })
    }
    const pending = this.acquiring.get(campaignId)
    if (pending) return pending
    const acquisition = this.acquire(campaignId).finally(() => this.acquiring.delete(campaignId))
    this.acquiring.set(campaignId, acquisition)
    return acquisition
  }

  /** True while this node holds the lease and can prove it by its own clock. */
  isProvable(campaignId: string): boolean {
    return this.keeper.epochOf(campaignId) !== undefined
  }

  /** The owner and epoch this node's writes of the campaign carry; undefined if it never held it. */
  fenceOf(campaignId: string): Fence | undefined {
    const epoch = this.epochs.get(campaignId)
    return epoch === undefined ? undefined : { nodeId: this.options.node.nodeId, epoch }
  }

  /**
   * Gives the lease up (its engine here is gone). `handover`: the campaign should keep running,
   * and another node (or this one after a restart) picks it up at once.
   */
  async release(campaignId: string, { handover = false } = {}): Promise<void> {
    const epoch = this.keeper.epochOf(campaignId)
    this.keeper.drop(campaignId)
    this.notBefore.delete(campaignId)
    this.takenOver.delete(campaignId)
    if (epoch === undefined) return
    await this.options.table.release(campaignId, this.options.node.nodeId, epoch, { handover })
  }

  /** The campaigns this node holds the lease of, provably. */
  heldCampaigns(): string[] {
    return this.keeper.heldCampaigns()
  }

  private async acquire(campaignId: string): Promise<EnsuredLease> {
    const sentAt = this.options.clock.now()
    const answer = await this.options.table.acquire(
      campaignId,
      this.options.node,
      this.options.ttlMs
    )
    if ('heldBy' in answer) return { ok: false, heldBy: answer.heldBy }
    const { epoch, previous, previousOwner } = answer.granted
    this.keeper.hold(campaignId, epoch, sentAt)
    this.remember(campaignId, epoch)
    const takeover = previousOwner !== null && previousOwner !== this.options.node.nodeId
    if (takeover) this.takenOver.add(campaignId)
    else this.takenOver.delete(campaignId)
    if (previous === 'expired') {
      this.notBefore.set(campaignId, sentAt + this.options.killBoundMs + this.marginMs)
    }
    return { ok: true, epoch, waitMs: this.waitOf(campaignId), takeover }
  }

  /** The campaign's engine launched here: it is this node's from now on. */
  launched(campaignId: string): void {
    this.takenOver.delete(campaignId)
  }

  private waitOf(campaignId: string): number {
    const notBefore = this.notBefore.get(campaignId)
    if (notBefore === undefined) return 0
    const wait = notBefore - this.options.clock.now()
    if (wait <= 0) this.notBefore.delete(campaignId)
    return Math.max(0, wait)
  }

  private remember(campaignId: string, epoch: number): void {
    this.epochs.delete(campaignId)
    this.epochs.set(campaignId, epoch)
    const max = this.options.maxRemembered ?? 100_000
    if (this.epochs.size > max) {
      const oldest = this.epochs.keys().next().value
      if (oldest !== undefined) this.epochs.delete(oldest)
    }
  }
}

/** A clock that never jumps: what a node reasons about its leases with. */
export const monotonicClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
}
