/**
 * The tables, as Kysely sees them (one set of types for SQLite and PostgreSQL). Times are epoch
 * milliseconds in `bigint` columns (read back as numbers); `linked` is 0 or 1 in both databases.
 * `migrations.ts` creates them; a change here needs a new migration there.
 *
 * @module
 */
import type { Generated } from 'kysely'

export interface CampaignsTable {
  campaign_id: string
  owner: string
  /** `running` or `stopped` (a CHECK constraint). */
  wanted: string
  linked: Generated<number>
  created_at: number
  updated_at: number
}

export interface SessionsTable {
  session_id: string
  /** References `campaigns`; a campaign's rows are never deleted, so neither is this link. */
  campaign_id: string
  status: string
  reason: string | null
  detail: string | null
  /** JSON: an array of `HistoryRecord`, oldest first. */
  history: string
  started_at: number
  updated_at: number
  ended_at: number | null
}

export interface Database {
  campaigns: CampaignsTable
  sessions: SessionsTable
}
