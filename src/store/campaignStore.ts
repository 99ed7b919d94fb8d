/**
 * The campaign store: what the session core keeps across restarts, per campaign (its owner, the
 * wanted state, whether it is linked, its current or last session and a bounded record of ended
 * sessions), and the durability each kind of write gets.
 *
 * - `claim` is the one write that is durable before it resolves: the answer to a start request
 *   (HTTP 202) waits on it, so an acknowledged owner is never forgotten.
 * - Everything else (`setWanted`, `setLinked`, `saveSession`) is written behind: queued, coalesced
 *   per record, written in batches at most `lagMs` later, flushed by `flush()` and at `close()`.
 *   These calls return at once and never wait on the database.
 *
 * The store does not interpret session statuses or reasons: it keeps the core's vocabulary as
 * text, so a record written by another version reads back as it was written.
 *
 * @module
 */
import type { WebhookOutbox } from './webhookOutbox.ts'

/** What the campaign should be doing: `running` after a start request, `stopped` after a cleanup or an unlink. */
export type WantedState = 'running' | 'stopped'

/** One step of a session's history, as the core records it. */
export interface HistoryRecord {
  status: string
  /** Epoch milliseconds. */
  at: number
  reason?: string
  detail?: string
}

/** A session as last written: the whole record, not a change (a later save replaces it). */
export interface SessionRecord {
  sessionId: string
  campaignId: string
  status: string
  reason: string | null
  detail: string | null
  /** Oldest first; only the newest `historyMaxEntries` are kept. */
  history: HistoryRecord[]
  /** Epoch ms; orders a campaign's sessions (the newest started is the current or last one). */
  startedAt: number
  /** Epoch ms of the last change. */
  updatedAt: number
  /** Epoch ms when the session ended; null while it lives. Only ended sessions are ever pruned. */
  endedAt: number | null
  /** Epoch ms of the last liveness probe that found WhatsApp connected; null if none. */
  lastSeenAlive: number | null
  /** The cluster node (`NODE_ID`) that runs or ran the session; null outside a cluster. */
  node?: string | null
}

export interface CampaignRecord {
  campaignId: string
  owner: string
  wanted: WantedState
  /** Saved auth exists and its last session reached ready (the core decides; the store keeps it). */
  linked: boolean
  /** The campaign's own proxy as the core wrote it (JSON text); null: none. */
  proxy: string | null
  /** Epoch ms of the claim. */
  createdAt: number
  /** Epoch ms of the last change to the campaign's own fields. */
  updatedAt: number
  /** The most recently started session (the current one, or the last); null before the first. */
  lastSession: SessionRecord | null
}

/**
 * The lease a write is made under (a cluster on PostgreSQL): applied only while the campaign's
 * `campaign_leases` row names this node at this epoch (released or not); otherwise dropped,
 * counted in `StoreHealth.fenced` and logged. SQLite has no cluster and ignores it.
 */
export interface WriteFence {
  nodeId: string
  epoch: number
}

export interface ClaimResult {
  /** The campaign's owner: the claimant's id if the claim won, else whoever owned it before. */
  owner: string
  /** True for the one claim that created the campaign. */
  created: boolean
}

export interface CampaignQuery {
  owner?: string
  wanted?: WantedState
  linked?: boolean
  /** Keyset paging: only campaigns whose id sorts after this one. */
  after?: string
  /** At most this many (default and maximum: 1,000). */
  limit?: number
}

/** How much of the past is kept. The ownership of a campaign is never pruned. */
export interface StoreBounds {
  /** `HISTORY_MAX_ENTRIES`: the newest history entries kept per session. */
  historyMaxEntries: number
  /**
   * `ENDED_SESSIONS_MAX`: ended sessions kept per campaign, the newest first (enforced whenever a
   * campaign's session is written).
   */
  endedSessionsMax: number
  /**
   * `ENDED_SESSIONS_TTL_MS`: ended sessions older than this are deleted by `prune`, except the
   * most recent ended session of each campaign, which is kept whatever its age.
   */
  endedSessionsTtlMs: number
}

export const DEFAULT_BOUNDS: StoreBounds = {
  historyMaxEntries: 50,
  endedSessionsMax: 20,
  endedSessionsTtlMs: 7 * 24 * 60 * 60_000,
}

export interface WriteBehindOptions {
  /** `STORE_WRITE_LAG_MS`: how long a change may wait before its batch is written. */
  lagMs: number
  /**
   * `STORE_WRITE_QUEUE_MAX`: records queued at most (one per changed session or campaign, however
   * often it changed). Sized to hold every session and campaign of a burst (10,000 sessions
   * starting at once queue about 20,000 records on PostgreSQL); see `StoreHealth.dropped`.
   */
  maxQueued: number
  /** Records written per transaction; the loop is yielded between transactions. */
  batchRows: number
  /**
   * Transactions written at once (each on its own connection). A record is in one of them at most:
   * a change made while its record is being written goes in a later round.
   */
  parallelBatches: number
  /** Retries of a failed batch back off from `lagMs`, doubling, up to this. */
  retryMaxMs: number
}

export const DEFAULT_WRITE_BEHIND: WriteBehindOptions = {
  lagMs: 50,
  maxQueued: 100_000,
  batchRows: 200,
  parallelBatches: 1,
  retryMaxMs: 5_000,
}

/** Figures of one written batch, for metrics and benchmarks. */
export interface BatchReport {
  rows: number
  /** Wall time of the batch's transaction. */
  durationMs: number
  /** Per record: from its first unwritten change until its batch committed. */
  lagsMs: number[]
}

export interface StoreHealth {
  kind: StoreKind
  /** Where the data is: a file path, or `postgres://user@host:port/database` (never a password). */
  location: string
  /** Records waiting to be written. */
  queued: number
  /**
   * Changes not queued because the queue was full (the database had been failing). Each such
   * record is written again with its next change.
   */
  dropped: number
  /** Records the database refused for good (a constraint), logged and not retried. */
  rejected: number
  /** Fenced writes refused because the campaign's lease had moved on (dropped, not retried). */
  fenced: number
  /** The last write error while writes fail; null once a write succeeds again. */
  failing: string | null
}

export type StoreKind = 'sqlite' | 'postgres'

export interface CampaignStore {
  readonly kind: StoreKind
  readonly location: string
  /** The webhook outbox, in the same database (see `webhookOutbox.ts`). */
  readonly webhooks: WebhookOutbox
  /**
   * Makes `owner` the owner of the campaign unless it already has one; durable when it resolves.
   * Concurrent claims of one campaign (in this process or in others on the same database) have
   * exactly one winner. A new campaign starts `running` and not linked.
   */
  claim(campaignId: string, owner: string): Promise<ClaimResult>
  /** Written behind. A campaign never claimed is ignored (with a warning). */
  setWanted(campaignId: string, wanted: WantedState): void
  /** Written behind. A campaign never claimed is ignored (with a warning). See `WriteFence`. */
  setLinked(campaignId: string, linked: boolean, fence?: WriteFence): void
  /** Written behind (JSON text; null clears it). A campaign never claimed is ignored (with a warning). */
  setProxy(campaignId: string, proxy: string | null): void
  /**
   * Written behind; the campaign must have been claimed (its claim resolved) before. See
   * `WriteFence`.
   */
  saveSession(record: SessionRecord, fence?: WriteFence): void
  /**
   * Writes every change made before the call; rejects if the database refuses (the changes stay
   * queued and are retried).
   */
  flush(): Promise<void>
  /** Reads see every write made before them (they flush first). */
  getCampaign(campaignId: string): Promise<CampaignRecord | undefined>
  listCampaigns(query?: CampaignQuery): Promise<CampaignRecord[]>
  getSession(sessionId: string): Promise<SessionRecord | undefined>
  /** A campaign's sessions, the newest first. */
  listSessions(campaignId: string): Promise<SessionRecord[]>
  /** Deletes ended sessions past `endedSessionsTtlMs`; resolves with how many. Also runs on a timer. */
  prune(): Promise<number>
  health(): StoreHealth
  /** Writes what is queued (retrying for a while if needed), then closes. Idempotent. */
  close(): Promise<void>
}
