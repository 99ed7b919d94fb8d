/**
 * The sessions that run on other nodes of a cluster, as their nodes tell them (`RemoteSessionEvent`,
 * relayed between nodes by the database): what this node shows of them while they live, so that
 * its views, its list and its subscribers answer for them as for its own.
 *
 * A remote session lives from its first event here until its `cleaned` (then the campaign table
 * keeps its tombstone), until a newer session of its campaign replaces it, or until its node is
 * declared dead (`deleteOfNode`). At most `max` are kept: past it the oldest is dropped, and
 * counted, so a node that never hears the end of other nodes' sessions holds a bounded number.
 *
 * @module
 */
import type { PairingCodeView, QrView, RemoteSessionEvent } from './api.ts'
import {
  FAILURE_REASONS,
  MAX_HISTORY,
  type FailureReason,
  type HistoryEntry,
  type SessionFailure,
  type SessionReason,
  type SessionStatus,
} from './status.ts'

/** What this node knows of a session that runs on another node. */
export interface RemoteSession {
  campaignId: string
  sessionId: string
  node: string
  status: SessionStatus
  reason: SessionReason | null
  isConnected: boolean
  hasActiveSession: boolean
  expiresAt: number | null
  lastSeenAlive: number | null
  /** The QR shown now: set by a `qr`, cleared by a status other than `awaitingScan`. */
  qr: QrView | null
  pairingCode: PairingCodeView | null
  /** The `error` the session ended with, kept for its replay and tombstone. */
  failure: SessionFailure | null
  /** From its status events, as its own node keeps it (at most `MAX_HISTORY` entries). */
  history: HistoryEntry[]
}

/** A session's event of the kinds a remote session is built from (not a `subscribed` replay). */
export type RemoteEvent = Exclude<RemoteSessionEvent['event'], { type: 'subscribed' }>

/**
 * The statuses that begin a session. An event of another session than the one shown is a late
 * word of an older session unless it has one of these.
 */
const STARTING_STATUSES: ReadonlySet<SessionStatus> = new Set(['idle', 'initializing'])

const TIMEOUT_REASONS: ReadonlySet<SessionReason> = new Set([
  'init_timeout',
  'scan_timeout',
  'auth_timeout',
])

const FAILURES: ReadonlySet<string> = new Set(FAILURE_REASONS)

function isFailureReason(reason: SessionReason): reason is FailureReason {
  return FAILURES.has(reason)
}

/** The event begins a new session (its first status). */
export function startsSession(event: RemoteEvent): boolean {
  return event.type === 'status' && STARTING_STATUSES.has(event.status)
}

/**
 * The event repeats the status the session last recorded: a node that reads again what the other
 * nodes run (after its listener reconnected) tells a status it may have told already. A session's
 * machine never records one status twice in a row, so a repeat carries nothing new.
 */
export function repeatsStatus(session: RemoteSession, event: RemoteEvent): boolean {
  if (event.type !== 'status') return false
  const last = session.history.at(-1)
  return last?.status === event.status && (last.reason ?? null) === event.reason
}

/**
 * A remote session as its first event here shows it. Usually that is its `initializing`; a node
 * that began listening while the session ran first hears a later event, and the status is the one
 * that event implies (a QR is shown while `awaitingScan`, an `error` comes with the end).
 */
export function newRemoteSession(
  event: RemoteEvent,
  sessionId: string,
  node: string,
  activeStatuses: ReadonlySet<SessionStatus>
): RemoteSession {
  const status = statusImpliedBy(event)
  return {
    campaignId: event.campaignId,
    sessionId,
    node,
    status,
    reason: null,
    isConnected: status === 'ready',
    hasActiveSession: activeStatuses.has(status),
    expiresAt: null,
    lastSeenAlive: null,
    qr: null,
    pairingCode: null,
    failure: null,
    history: [],
  }
}

function statusImpliedBy(event: RemoteEvent): SessionStatus {
  switch (event.type) {
    case 'status':
      return event.status
    case 'qr':
    case 'pairing_code':
      return 'awaitingScan'
    case 'ready':
      return 'ready'
    case 'error':
      return TIMEOUT_REASONS.has(event.code) ? 'timedOut' : 'failed'
  }
}

/**
 * Applies one event of the session to what is known of it, as the session's own node changed its
 * view: the status, its history entry (with the failure's `detail`, as the machine records it),
 * the QR or pairing code shown, the failure.
 */
export function applyRemoteEvent(session: RemoteSession, remote: RemoteSessionEvent): void {
  const { event } = remote
  session.node = remote.node
  session.expiresAt = remote.expiresAt
  session.lastSeenAlive = remote.lastSeenAlive
  switch (event.type) {
    case 'status': {
      session.status = event.status
      session.reason = event.reason
      session.isConnected = event.isConnected
      session.hasActiveSession = event.hasActiveSession
      if (event.status !== 'awaitingScan') {
        session.qr = null
        session.pairingCode = null
      }
      const entry: HistoryEntry = { status: event.status, at: event.at }
      if (event.reason) entry.reason = event.reason
      const detail = session.failure?.detail
      if (event.reason && detail && event.status !== 'cleaned') entry.detail = detail
      appendHistory(session, entry)
      break
    }
    case 'qr':
      session.qr = { qr: event.qr, attempt: event.attempt, expiresAt: event.expiresAt }
      break
    case 'pairing_code':
      session.pairingCode = { code: event.code, expiresAt: event.expiresAt }
      break
    case 'ready':
      break
    case 'error': {
      if (!isFailureReason(event.code)) break
      session.failure = { code: event.code, message: event.message, detail: event.detail }
      // The machine records the failure's status first, then tells its error: the detail belongs
      // to that status's entry.
      const last = session.history.at(-1)
      if (event.detail && last && last.reason === event.code && last.detail === undefined) {
        session.history = [...session.history.slice(0, -1), { ...last, detail: event.detail }]
      }
      break
    }
    case 'subscribed':
      break
  }
}

/** A new array each time, as the machine's history is: a view handed out never changes. */
function appendHistory(session: RemoteSession, entry: HistoryEntry): void {
  const { history } = session
  session.history =
    history.length >= MAX_HISTORY ? [...history.slice(1 - MAX_HISTORY), entry] : [...history, entry]
}

/** The remote sessions by sessionId, the oldest dropped past `max`. */
export class RemoteSessions {
  private readonly bySession = new Map<string, RemoteSession>()
  /**
   * The sessions in the order they were added, oldest first from `head`; a session that ended is
   * left in it and skipped when reached (`bySession` no longer holds it). Not the Map's own order:
   * iterating a Map from its head walks the entries deleted since V8 last compacted it.
   */
  private order: RemoteSession[] = []
  private head = 0
  private droppedCount = 0

  constructor(private readonly max: number) {
    if (!Number.isInteger(max) || max < 1) {
      throw new RangeError(`maxRemoteSessions must be an integer of at least 1 (got ${max})`)
    }
  }

  get size(): number {
    return this.bySession.size
  }

  /** Sessions dropped because `max` were kept already. */
  get dropped(): number {
    return this.droppedCount
  }

  get(sessionId: string): RemoteSession | undefined {
    return this.bySession.get(sessionId)
  }

  /** Adds a session, then drops the oldest past `max`, telling `onDropped` of each. */
  add(session: RemoteSession, onDropped: (dropped: RemoteSession) => void): void {
    this.bySession.set(session.sessionId, session)
    this.order.push(session)
    while (this.bySession.size > this.max && this.head < this.order.length) {
      const oldest = this.order[this.head++]!
      if (this.bySession.get(oldest.sessionId) !== oldest) continue
      this.bySession.delete(oldest.sessionId)
      this.droppedCount++
      onDropped(oldest)
    }
    this.compact()
  }

  delete(session: RemoteSession): void {
    if (this.bySession.get(session.sessionId) === session) this.bySession.delete(session.sessionId)
    this.compact()
  }

  /**
   * Removes and returns every session of `node`. It walks every remote session: it happens once
   * per node declared dead.
   */
  deleteOfNode(node: string): RemoteSession[] {
    const deleted: RemoteSession[] = []
    for (const session of this.bySession.values()) {
      if (session.node === node) deleted.push(session)
    }
    for (const session of deleted) this.bySession.delete(session.sessionId)
    this.compact()
    return deleted
  }

  /**
   * Keeps `order` within twice the sessions it holds (plus a constant): rebuilt once more than
   * half of it is gone, which costs O(1) per session added or deleted, amortized.
   */
  private compact(): void {
    if (this.order.length <= 2 * this.bySession.size + 1024) return
    const kept: RemoteSession[] = []
    for (let i = this.head; i < this.order.length; i++) {
      const session = this.order[i]!
      if (this.bySession.get(session.sessionId) === session) kept.push(session)
    }
    this.order = kept
    this.head = 0
  }
}
