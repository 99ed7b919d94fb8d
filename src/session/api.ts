/**
 * The session API: the small typed interface the HTTP and WebSocket layers use. Edges parse and
 * authorize, call one of these, and shape the answer; all session logic lives behind it, in the
 * supervisor and the campaign machines.
 *
 * @module
 */
import type { ProxySettings } from '../proxy.ts'
import type { RestoreProgress } from './restore.ts'
import type { HistoryEntry, SessionReason, SessionStatus } from './status.ts'

export type { HistoryEntry, SessionReason, SessionStatus }
export { SESSION_REASONS, SESSION_STATUSES } from './status.ts'

/** The contract's campaign id pattern. */
export const CAMPAIGN_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/

/** Who is asking. The edge builds it from a verified token. */
export interface Caller {
  userId: string
  admin: boolean
}

export interface QrView {
  /** The raw QR text as the engine produced it (render it only when someone looks). */
  qr: string
  /** 1 for the first QR of the session, +1 on each rotation. */
  attempt: number
  /** Epoch ms when the scan deadline passes (QR rotations do not move it). */
  expiresAt: number
}

/** The pairing code a session that links with a phone number shows (type it on the phone). */
export interface PairingCodeView {
  /** 8 characters, as WhatsApp shows them; a renewal replaces it. */
  code: string
  /** Epoch ms when the scan deadline passes (renewals do not move it). */
  expiresAt: number
}

/** What is known of a campaign: its live session, or the tombstone of its last one. */
export interface CampaignView {
  campaignId: string
  /** The user who first started a session for the campaign; null if never started. */
  owner: string | null
  sessionId: string | null
  status: SessionStatus
  reason: SessionReason | null
  isConnected: boolean
  hasActiveSession: boolean
  /** Epoch ms of the last engine event or request for the campaign; null if none. */
  lastActivity: number | null
  /** Epoch ms of the current phase's deadline; null when none runs. */
  expiresAt: number | null
  /**
   * Epoch ms when WhatsApp was last known connected (ready, then each liveness probe answered),
   * kept in the tombstone of an ended session; null if the session never was ready.
   */
  lastSeenAlive: number | null
  history: HistoryEntry[]
  /** The QR currently shown, if the session is awaiting a scan. */
  qr: QrView | null
  /** The pairing code currently shown, if the session links with a phone number. */
  pairingCode: PairingCodeView | null
  /**
   * The node (`NODE_ID`) that runs the session shown, or ran it when that is known; null outside
   * a cluster, and for a session remembered from the store.
   */
  node: string | null
}

export type StartOutcome =
  /** A new session was started (or queued behind the one being cleaned up): HTTP 202. */
  | 'started'
  /** The live, not yet ready session was joined: HTTP 200, `reused: true`. */
  | 'joined'
  /** The session is ready; nothing was started: HTTP 200. */
  | 'ready'

export type StartResult =
  | { ok: true; outcome: StartOutcome; view: CampaignView }
  | { ok: false; error: 'at_capacity'; retryAfterSeconds: number }
  | { ok: false; error: 'shutting_down' }
  | { ok: false; error: 'forbidden' }
  /** The durable store could not record the new campaign's owner: nothing was started. */
  | { ok: false; error: 'store_unavailable'; retryAfterSeconds: number }

export interface StartRequest {
  campaignId: string
  caller: Caller
  force?: boolean
  /**
   * Link with this phone number (international format, digits only) by a pairing code instead of
   * a QR. A live session that is not linking with this number, and not ready, is replaced.
   */
  pairWithPhoneNumber?: string
  /**
   * The campaign's proxy from now on (null: none; absent: unchanged). A live session keeps its
   * own; the next one uses it.
   */
  proxy?: ProxySettings | null
}

export interface CleanupResult {
  campaignId: string
  /** The session that was torn down (or the last one, when there was none to tear down). */
  sessionId: string | null
  hadSession: boolean
}

export interface UnlinkResult extends CleanupResult {
  /** The campaign's saved WhatsApp login was deleted (false if a new session took it meanwhile). */
  loginDeleted: boolean
}

/** The restore of linked campaigns after a start (see `restore.ts`). */
export type { RestoreProgress }

/**
 * What a subscriber receives. `subscribed` is always first and replays the current state;
 * if a QR is shown a `qr` follows at once, and if the session already ended its outcome
 * (`ready`, or `error`) follows.
 */
export type SessionEvent = {
  campaignId: string
  sessionId: string | null
  /** Increases for every message about the campaign. */
  seq: number
  /** Epoch ms. */
  at: number
} & (
  | {
      type: 'subscribed'
      status: SessionStatus
      reason: SessionReason | null
      isConnected: boolean
      /** The status holds (or is starting) an engine: `initializing` to `ready`. */
      hasActiveSession: boolean
      /** The node that runs (or ran) the session; null outside a cluster or when unknown. */
      node: string | null
    }
  | {
      type: 'status'
      status: SessionStatus
      reason: SessionReason | null
      isConnected: boolean
      /** The status holds (or is starting) an engine: `initializing` to `ready`. */
      hasActiveSession: boolean
      /** The node that runs the session; null outside a cluster. */
      node: string | null
      /** With `cleaned`: how the engine's teardown went (for metrics). */
      teardown?: { forced: boolean; durationMs: number }
    }
  | { type: 'qr'; qr: string; attempt: number; expiresAt: number }
  | { type: 'pairing_code'; code: string; expiresAt: number }
  | { type: 'ready' }
  | {
      type: 'error'
      code: SessionReason
      message: string
      /** What the engine said, with a hint when the cause is known; null when it said nothing. */
      detail: string | null
    }
)

/** `Omit` applied to each member of a union (a plain `Omit` would merge the members). */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never

/**
 * An event of a session that runs on another node, as that node published it. Applied with
 * `applyRemote`, it makes this node's views, list and subscribers answer for that session too.
 */
export interface RemoteSessionEvent {
  /** The node that runs the session (its `NODE_ID`). */
  node: string
  /** The campaign's owner. */
  owner: string
  /**
   * The event as the other node's table published it, minus its `seq` (this node numbers it):
   * `status`, `qr`, `pairing_code`, `ready` or `error`.
   */
  event: DistributiveOmit<SessionEvent, 'seq'>
  /** Facts of the session's view at that moment that no event carries. */
  expiresAt: number | null
  lastSeenAlive: number | null
}

export type SubscriptionTarget = { campaignId: string } | { sessionId: string }

export interface Subscription {
  unsubscribe(): void
}

/** Which campaigns `listCampaigns` answers, and which page of them. */
export interface CampaignQuery {
  /** Only the campaigns this user owns. */
  owner?: string
  /** Only these campaigns (a token's `campaigns` claim). */
  campaignIds?: ReadonlySet<string>
  /** The campaigns after this position: a previous page's `next`. From the first when absent. */
  after?: number
  /** At most this many (at least 1); every one when absent. */
  limit?: number
}

export interface CampaignPage {
  /** Oldest first: in the order the campaigns were first started (as remembered). */
  campaigns: CampaignView[]
  /** Where the next page starts (pass it as `after`); null when this page reaches the end. */
  next: number | null
}

export interface SessionStats {
  accepting: boolean
  /** Campaigns remembered: with a live session or a remembered ended one. */
  campaigns: number
  live: number
  maxSessions: number
  byStatus: Record<SessionStatus, number>
  /** With a durable store: how the restore of linked campaigns goes; null without one. */
  restore: RestoreProgress | null
  /** Liveness probes of ready sessions since the start, by how they ended. */
  probes: { alive: number; missed: number }
}

export interface SessionService {
  /**
   * Starts a session or joins the live one; never waits for a QR. In memory it answers at once;
   * with a durable store, the first request for a campaign this process does not know waits for
   * its owner to be committed.
   */
  requestSession(request: StartRequest): StartResult | Promise<StartResult>
  /**
   * Tears the campaign's sessions down; resolves once the engines of the sessions live now are
   * gone (a session requested meanwhile is not waited for). Idempotent.
   */
  cleanupSession(campaignId: string): Promise<CleanupResult>
  /**
   * Unlinks the campaign: its sessions stop, a live one logging the device out of WhatsApp first,
   * then its saved login is deleted. The campaign stays its owner's, and is not restored.
   */
  unlinkCampaign(campaignId: string): Promise<UnlinkResult>
  /** Always answers; a campaign never seen is `idle`. */
  getCampaign(campaignId: string): CampaignView
  /** The owner of a campaign, or undefined if nobody started one yet. */
  ownerOf(campaignId: string): string | undefined
  /** The campaign's own proxy (not `WA_PROXY`); null when it set none. */
  proxyOf(campaignId: string): ProxySettings | null
  /**
   * Sets (null: removes) the proxy of a campaign, from its next session on. False when nobody
   * owns the campaign yet: its first start request claims it, and may carry the proxy.
   */
  setProxy(campaignId: string, proxy: ProxySettings | null): boolean
  /**
   * The campaigns the service remembers (a live session, or an ended one it still remembers), a
   * page at a time. A page costs what it holds, not the number of campaigns.
   */
  listCampaigns(query?: CampaignQuery): CampaignPage
  /**
   * Subscribes to a campaign (across its sessions) or to one session. The listener first gets the
   * replay of the current state, synchronously. Returns undefined for an unknown sessionId.
   */
  subscribe(
    target: SubscriptionTarget,
    listener: (event: SessionEvent) => void
  ): Subscription | undefined
  stats(): SessionStats
  /** Stops accepting sessions, tears every session down in parallel, resolves when all are gone. */
  shutdown(): Promise<void>
}
