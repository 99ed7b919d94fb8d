/**
 * What the session core needs of a durable store: the port that `src/store` (SQLite or
 * PostgreSQL) fills, declared here so the core depends on no database. The composition root hands
 * the opened store in; without one the service keeps everything in memory.
 *
 * The store keeps the core's vocabulary as text: what it reads back is checked, not trusted (a
 * record written by another version may name a status this one does not know).
 *
 * @module
 */

/** What the campaign should be doing: `running` after a start request, `stopped` after a cleanup or an unlink. */
export type WantedState = 'running' | 'stopped'

export interface StoredHistoryEntry {
  status: string
  at: number
  reason?: string
  detail?: string
}

/** A session as last written (the whole record; a later save replaces it). */
export interface StoredSession {
  sessionId: string
  campaignId: string
  status: string
  reason: string | null
  detail: string | null
  history: StoredHistoryEntry[]
  startedAt: number
  updatedAt: number
  /** Null while the session lives (or when the process died under it). */
  endedAt: number | null
  /** The last liveness probe that found WhatsApp connected; null if none. */
  lastSeenAlive: number | null
  /** The cluster node that runs or ran the session; null (or absent) outside a cluster. */
  node?: string | null
}

export interface StoredCampaign {
  campaignId: string
  owner: string
  wanted: WantedState
  /** Its saved WhatsApp login exists and its last session reached ready. */
  linked: boolean
  /** The campaign's own proxy as `Durability` wrote it (JSON text); null or absent: none. */
  proxy?: string | null
  lastSession: StoredSession | null
}

/**
 * The lease a write is made under (a cluster on PostgreSQL): the write is applied only while the
 * campaign's lease row names this node at this epoch; otherwise it is dropped (counted, logged).
 */
export interface WriteFence {
  nodeId: string
  epoch: number
}

export interface SessionStore {
  /**
   * Makes `owner` the campaign's owner unless it has one; durable once it resolves. Resolves with
   * the owner either way (the claimant's id if the claim won).
   */
  claim(campaignId: string, owner: string): Promise<{ owner: string; created: boolean }>
  /** Written behind: returns at once. */
  setWanted(campaignId: string, wanted: WantedState): void
  /** Written behind: returns at once. With a fence, only while the lease is still that one. */
  setLinked(campaignId: string, linked: boolean, fence?: WriteFence): void
  /** Written behind: returns at once. JSON text; null clears it. */
  setProxy(campaignId: string, proxy: string | null): void
  /**
   * Written behind: returns at once. The campaign's claim must have resolved before. With a fence,
   * only while the lease is still that one.
   */
  saveSession(record: StoredSession, fence?: WriteFence): void
  /** The campaign as stored (sees every write made before it), for a node taking it over. */
  getCampaign(campaignId: string): Promise<StoredCampaign | undefined>
  /** A page of campaigns in id order, after `after`. */
  listCampaigns(query: { after?: string; limit?: number }): Promise<StoredCampaign[]>
}
