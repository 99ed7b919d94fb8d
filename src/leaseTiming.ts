/**
 * The lease arithmetic of a cluster: how often a lease is renewed, when a node that could not
 * renew must start killing its browsers, and whether a configuration leaves room for that.
 * Plain functions of the settings, so the configuration can check them (src/config.ts) and the
 * cluster can use them (src/cluster/leaseKeeper.ts, campaignLeases.ts).
 *
 * @module
 */

export interface LeaseTiming {
  /** `LEASE_TTL_MS` */
  ttlMs: number
  /** The forced phase of an engine's stop (`KILL_TIMEOUT_MS`): what fencing has to fit in. */
  killBoundMs: number
  /** Scheduling and drift allowance on top (default 2 s). */
  marginMs?: number
}

/** The allowance for the monotonic clock running slow against the database's. */
const DRIFT = 0.01
/**
 * Scheduling and drift allowance on top of the kill bound: the fencing deadline's, and a
 * takeover's extra wait (`KILL_TIMEOUT_MS` + this) before it launches a browser.
 */
export const LEASE_MARGIN_MS = 2_000

export function renewIntervalMs(timing: LeaseTiming): number {
  return Math.floor(timing.ttlMs / 3)
}

/** From the sending of the last successful renewal until fencing starts. */
export function fenceAfterMs({ ttlMs, killBoundMs, marginMs = LEASE_MARGIN_MS }: LeaseTiming) {
  return Math.floor(ttlMs * (1 - DRIFT)) - killBoundMs - marginMs
}

/**
 * Null when fencing has room: at least one renewal interval between the last renewal and the
 * moment fencing must start. Otherwise the reason, naming the settings to change.
 */
export function checkLeaseTiming(timing: LeaseTiming): string | null {
  const room = fenceAfterMs(timing) - renewIntervalMs(timing)
  if (room >= 0) return null
  const margin = timing.marginMs ?? LEASE_MARGIN_MS
  const needed = Math.ceil(((timing.killBoundMs + margin) * 3) / (2 - 3 * DRIFT))
  return (
    `LEASE_TTL_MS ${timing.ttlMs} leaves no time to fence: a node must kill its browsers ` +
    `(KILL_TIMEOUT_MS ${timing.killBoundMs} + ${margin} ms margin) before its lease expires, ` +
    `a renewal interval (LEASE_TTL_MS / 3) after its last renewal; set LEASE_TTL_MS to at least ` +
    `${needed}, or lower KILL_TIMEOUT_MS`
  )
}
