/**
 * Time as a dependency. Everything in qrvisor that waits or stamps a time goes through a
 * `Clock`, so tests can run deadlines in simulated time.
 *
 * `systemClock` looks the global timer functions up at each call (not at import), so vitest's
 * fake timers drive it too.
 *
 * @module
 */

export type TimerHandle = unknown

export interface Clock {
  now(): number
  setTimeout(fn: () => void, ms: number): TimerHandle
  clearTimeout(handle: TimerHandle): void
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
}

/** Resolves after `ms` on the given clock. */
export function delay(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms))
}
