/**
 * The restart policy of sessions whose engine crashed (or went unresponsive) while ready: at most
 * `maxRestarts` per campaign within `windowMs`, each after an exponential backoff with jitter.
 *
 * Functions only: the state they read and write (restart times per campaign, the restarts
 * pending) is the supervisor's context. Only campaigns restarted within the window matter; the
 * others are pruned whenever the number of campaigns remembered doubles, so what is kept is
 * bounded by the restarts of one window (amortised O(1) per restart).
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

/** Below this many campaigns remembered, no pruning. */
const MIN_PRUNE_SIZE = 1024

/** Restart times per campaign, oldest first (those of the window, and stale ones not pruned yet). */
export type RecentRestarts = ReadonlyMap<string, readonly number[]>

/** One more restart of a campaign: its restart times with this one, and the backoff before it. */
export interface RestartSpent {
  times: number[]
  delayMs: number
}

/**
 * Spends one restart at `now` from a campaign's restart `times`: the times with it and the
 * backoff before it, or undefined when the budget of the window is spent. `jitter` is in [0, 1).
 */
export function spendRestart(
  times: readonly number[] | undefined,
  now: number,
  policy: RestartPolicy,
  jitter: number
): RestartSpent | undefined {
  const { maxRestarts, windowMs, baseDelayMs, maxDelayMs } = policy
  const recent = (times ?? []).filter((at) => now - at < windowMs)
  if (recent.length >= maxRestarts) return undefined
  recent.push(now)
  const exponential = Math.min(maxDelayMs, baseDelayMs * 2 ** (recent.length - 1))
  // "Equal jitter": half fixed, half random, so restarts of many campaigns never line up.
  return { times: recent, delayMs: Math.round(exponential / 2 + jitter * (exponential / 2)) }
}

/** Whether `recent` has grown enough to be pruned (it doubled since the last pruning). */
export function shouldPrune(recent: RecentRestarts, prunedSize: number): boolean {
  return recent.size >= Math.max(MIN_PRUNE_SIZE, prunedSize * 2)
}

/** The campaigns of `recent` with a restart in the window at `now`. */
export function pruneRestarts(
  recent: RecentRestarts,
  now: number,
  policy: RestartPolicy
): Map<string, readonly number[]> {
  const kept = new Map<string, readonly number[]>()
  for (const [campaignId, times] of recent) {
    if (now - times.at(-1)! < policy.windowMs) kept.set(campaignId, times)
  }
  return kept
}
