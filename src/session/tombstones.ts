/**
 * The tombstones of ended sessions: what a session was when it ended, kept for a bounded count
 * and age so that a late status request or subscription still gets an answer.
 *
 * @module
 */
import type { HistoryEntry, SessionFailure, SessionReason, SessionStatus } from './status.ts'

export interface Tombstone {
  campaignId: string
  sessionId: string
  /** `timedOut` or `failed` when the session ended that way, else `cleaned`. */
  status: SessionStatus
  reason: SessionReason | null
  failure: SessionFailure | null
  history: HistoryEntry[]
  endedAt: number
  /** When WhatsApp was last known connected (epoch ms); absent if never, or not kept by a store. */
  lastSeenAlive?: number
  /** The node that ran the session (a cluster's `NODE_ID`); absent outside a cluster or unknown. */
  node?: string
}

export interface TombstonesOptions {
  /** How many ended sessions are remembered, and for how long. */
  maxTombstones: number
  tombstoneTtlMs: number
}

/** Tombstones by sessionId, the oldest evicted first past the count or the age bound. */
export class Tombstones {
  private readonly bySession = new Map<string, Tombstone>()
  /**
   * Their sessionIds, oldest first, consumed from `head`. Not the Map's own order: iterating a
   * Map from its head walks every entry deleted since V8 last compacted it, which made evicting
   * past the bound cost O(N) each (21 s to shut down 100k sessions).
   */
  private order: string[] = []
  private head = 0

  constructor(private readonly options: TombstonesOptions) {}

  get size(): number {
    return this.bySession.size
  }

  get(sessionId: string): Tombstone | undefined {
    return this.bySession.get(sessionId)
  }

  /** Adds a tombstone, then evicts the oldest past the bounds, telling `onEvicted` of each. */
  add(tombstone: Tombstone, now: number, onEvicted: (evicted: Tombstone) => void): void {
    this.bySession.set(tombstone.sessionId, tombstone)
    this.order.push(tombstone.sessionId)
    const oldestAllowed = now - this.options.tombstoneTtlMs
    while (this.order.length > this.head) {
      const oldest = this.bySession.get(this.order[this.head]!)!
      if (this.bySession.size <= this.options.maxTombstones && oldest.endedAt >= oldestAllowed) {
        break
      }
      this.head++
      this.bySession.delete(oldest.sessionId)
      onEvicted(oldest)
    }
    // Drop the consumed head of the queue once it is the larger part.
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head)
      this.head = 0
    }
  }
}

/** What an ended session leaves: how it ended, or an internal error for an actor's bug. */
export function tombstoneOf(
  ended: {
    campaignId: string
    sessionId: string
    reason: SessionReason | null
    failure: SessionFailure | null
    history: HistoryEntry[]
    lastSeenAlive?: number | null
    node?: string | null
  },
  endedAt: number,
  bug: unknown
): Tombstone {
  const { campaignId, sessionId, history } = ended
  const seen = {
    ...(typeof ended.lastSeenAlive === 'number' ? { lastSeenAlive: ended.lastSeenAlive } : {}),
    ...(typeof ended.node === 'string' ? { node: ended.node } : {}),
  }
  if (!bug) {
    const { reason, failure } = ended
    return {
      campaignId,
      sessionId,
      status: outcomeOf(history),
      reason,
      failure,
      history,
      endedAt,
      ...seen,
    }
  }
  return {
    ...seen,
    campaignId,
    sessionId,
    status: 'failed',
    reason: 'engine_failed',
    failure: {
      code: 'engine_failed',
      message: 'The session stopped because of an internal error.',
      detail: 'internal error',
    },
    history: [
      ...history,
      { status: 'failed', at: endedAt, reason: 'engine_failed', detail: 'internal error' },
    ],
    endedAt,
  }
}

/** The status a finished session is remembered by: how it ended, not only that it did. */
export function outcomeOf(history: HistoryEntry[]): SessionStatus {
  for (let i = history.length - 1; i >= 0; i--) {
    const status = history[i]!.status
    if (status === 'timedOut' || status === 'failed') return status
  }
  return 'cleaned'
}
