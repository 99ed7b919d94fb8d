/**
 * The restart budget of sessions whose engine crashed while ready: at most `maxRestarts` per
 * campaign within `windowMs`, each after an exponential backoff with jitter.
 *
 * Only campaigns restarted within the window matter; the others are swept out whenever the number
 * of campaigns remembered doubles, so what is kept is bounded by the restarts of one window
 * (amortised O(1) per restart).
 *
 * @module
 */

export interface RestartPolicy {
  /** At most this many restarts of one campaign within `windowMs`; past it the session stays failed. */
  maxRestarts: number
  windowMs: number
  /** Backoff before the n-th restart in the window: baseDelayMs·2ⁿ, capped, with jitter. */
  baseDelayMs: number
  maxDelayMs: number
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  maxRestarts: 3,
  windowMs: 5 * 60_000,
  baseDelayMs: 1_000,
  maxDelayMs: 30_000,
}

/** Below this many campaigns remembered, no sweep. */
const MIN_SWEEP_SIZE = 1024

export class RestartBudget {
  /** Restart times per campaign, oldest first (those of the window, and stale ones not swept yet). */
  private readonly restarts = new Map<string, number[]>()
  private sweepAtSize = MIN_SWEEP_SIZE

  constructor(
    private readonly policy: RestartPolicy,
    private readonly random: () => number
  ) {}

  /** Campaigns remembered. */
  get size(): number {
    return this.restarts.size
  }

  /**
   * Spends one restart of the campaign at `now` and answers the backoff before it, or undefined
   * when the campaign's budget for the window is spent.
   */
  spend(campaignId: string, now: number): number | undefined {
    const { maxRestarts, windowMs, baseDelayMs, maxDelayMs } = this.policy
    const recent = (this.restarts.get(campaignId) ?? []).filter((at) => now - at < windowMs)
    if (recent.length >= maxRestarts) {
      this.restarts.set(campaignId, recent)
      return undefined
    }
    recent.push(now)
    this.restarts.set(campaignId, recent)
    if (this.restarts.size >= this.sweepAtSize) this.sweep(now)
    const exponential = Math.min(maxDelayMs, baseDelayMs * 2 ** (recent.length - 1))
    // "Equal jitter": half fixed, half random, so restarts of many campaigns never line up.
    return Math.round(exponential / 2 + this.random() * (exponential / 2))
  }

  /** Forgets the campaigns with no restart in the window. */
  private sweep(now: number): void {
    for (const [campaignId, times] of this.restarts) {
      if (now - times.at(-1)! >= this.policy.windowMs) this.restarts.delete(campaignId)
    }
    this.sweepAtSize = Math.max(MIN_SWEEP_SIZE, this.restarts.size * 2)
  }
}
