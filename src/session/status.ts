/**
 * The vocabulary of a session, exactly as the public contract names it: statuses, the reasons a
 * session ended, and the codes sent to WebSocket subscribers.
 *
 * @module
 */

export const SESSION_STATUSES = [
  'idle',
  'initializing',
  'awaitingScan',
  'authenticating',
  'ready',
  'timedOut',
  'failed',
  'cleaning',
  'cleaned',
] as const

export type SessionStatus = (typeof SESSION_STATUSES)[number]

/**
 * Why a session left its happy path. The failure reasons are also the WebSocket `error` codes;
 * the last four reasons say who ended a session that did not fail.
 */
export const FAILURE_REASONS = [
  'init_timeout',
  'scan_timeout',
  'auth_timeout',
  'engine_failed',
  'logged_out',
  /** Linked, but WhatsApp did not answer `LIVENESS_MISSES` liveness probes in a row. */
  'unresponsive',
  /** The node running the session died or lost its lease (a cluster); it is never restarted. */
  'node_lost',
] as const

export type FailureReason = (typeof FAILURE_REASONS)[number]

export const SESSION_REASONS = [
  ...FAILURE_REASONS,
  'cleanup_requested',
  'unlinked',
  'replaced',
  'shutdown',
] as const

export type SessionReason = (typeof SESSION_REASONS)[number]

/** How a session ended badly, as its subscribers are told (the WebSocket `error`). */
export interface SessionFailure {
  code: FailureReason
  message: string
  /** What the engine said, with a hint when the cause is known; null when it said nothing. */
  detail: string | null
}

export interface HistoryEntry {
  status: SessionStatus
  /** Epoch milliseconds. */
  at: number
  reason?: SessionReason
  /** A short, human-readable detail (e.g. what the engine reported). Never a token or a QR. */
  detail?: string
}

/** At most this many history entries are kept per session (the oldest are dropped). */
export const MAX_HISTORY = 50
