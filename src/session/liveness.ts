/**
 * The liveness probe's settings, and where in its interval each session's probe falls.
 *
 * A session can look connected while it is dead: the page's socket to WhatsApp is gone without a
 * `disconnected` event, or the page hangs. So a `ready` session's engine is asked, every
 * `intervalMs`, whether WhatsApp is connected; the campaign machine owns the timing and the
 * verdict (see campaignMachine.ts), the engine only answers (`EngineSession.probe`).
 *
 * @module
 */

export interface LivenessSettings {
  /** `LIVENESS_INTERVAL_MS`: between two probes of a ready session. */
  intervalMs: number
  /** `LIVENESS_TIMEOUT_MS`: a probe not answered within it is a miss. */
  timeoutMs: number
  /** `LIVENESS_MISSES`: this many misses in a row end the session `unresponsive`. */
  misses: number
}

export const DEFAULT_LIVENESS: LivenessSettings = {
  intervalMs: 30_000,
  timeoutMs: 10_000,
  misses: 2,
}

/**
 * The session's offset in the probe interval, in [0, intervalMs): a hash of its id, so sessions
 * that became ready at the same instant (a restore, a mass restart) are not probed at the same
 * instant, and a given session always falls at the same point (tests can reason about it).
 */
export function probeOffsetMs(sessionId: string, intervalMs: number): number {
  // FNV-1a, 32 bits: cheap, and uniform enough over random session ids.
  let hash = 0x811c9dc5
  for (let i = 0; i < sessionId.length; i++) {
    hash ^= sessionId.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash % Math.max(1, Math.floor(intervalMs))
}
