/**
 * How long a failed delivery waits before its next attempt: exponential from `baseMs`, doubling
 * per failed attempt, capped, with ±20 % jitter so receivers coming back are not hit by every
 * lane at the same instant.
 *
 * @module
 */

export interface BackoffOptions {
  /** `WEBHOOK_RETRY_BASE_MS`: the wait after the first failure. */
  baseMs: number
  /** `WEBHOOK_RETRY_MAX_MS`: the longest wait. */
  maxMs: number
  /** A number in [0, 1) (injectable for tests). */
  random?: () => number
}

/** The wait after `failures` failed attempts (1 after the first). */
export function retryDelay(
  failures: number,
  { baseMs, maxMs, random = Math.random }: BackoffOptions
): number {
  const exponential = Math.min(maxMs, baseMs * 2 ** Math.max(0, failures - 1))
  return Math.round(exponential * (0.8 + 0.4 * random()))
}
