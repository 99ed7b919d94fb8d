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
  /** JSON of the campaign's proxy (address and credentials); null: none of its own. */
  proxy: Generated<string | null>
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
  /** When a liveness probe last found WhatsApp connected (epoch ms); null if never. */
  last_seen_alive: number | null
  /** The cluster node that ran the session; null outside a cluster. */
  node: string | null
}

/** Where webhook events go: the service-wide endpoint (`campaign_id` null) or one campaign's. */
export interface WebhookEndpointsTable {
  endpoint_id: string
  /** References `campaigns`; null for the service-wide endpoint. At most one per campaign. */
  campaign_id: string | null
  url: string
  /** JSON: an array of event types. */
  events: string
  /** The `whsec_` signing secret; null for the service-wide endpoint (its secret is configuration). */
  secret: string | null
  created_at: number
  /** Set when the receiver answered 410 Gone; a disabled endpoint gets no new deliveries. */
  disabled_at: number | null
  disabled_reason: string | null
}

/** The outbox: one row per event and endpoint, kept after it ends until pruned. */
export interface WebhookDeliveriesTable {
  /** Insertion order, across restarts: orders a campaign's deliveries to one endpoint. */
  position: Generated<number>
  /** Also the `webhook-id` header: the same on every attempt, so receivers can deduplicate. */
  delivery_id: string
  endpoint_id: string
  campaign_id: string
  type: string
  /** The exact JSON body sent on every attempt. */
  payload: string
  /** `pending`, `delivered`, `failed` (gave up) or `cancelled` (its endpoint went away). */
  status: string
  attempts: number
  last_error: string | null
  /** Epoch ms; for a pending delivery, when it may next be sent. */
  next_attempt_at: number
  /** Epoch ms until which one worker holds it (in flight); an expired lease is free again. */
  lease_until: number | null
  created_at: number
  updated_at: number
  delivered_at: number | null
}

/** A node of a cluster, as its heartbeats say (PostgreSQL only; see src/cluster). */
export interface ClusterNodesTable {
  node_id: string
  url: string
  /** Epoch ms by the database's clock. */
  heartbeat_at: number
  started_at: number
  live_sessions: Generated<number>
  max_sessions: Generated<number>
  draining: Generated<number>
  /** The token of the node's marker file in `DATA_DIR/cluster` (the shared-folder check); null: none yet. */
  data_marker: Generated<string | null>
  /** The process that holds this `NODE_ID` (random per start); null: a node of a version before it. */
  instance: Generated<string | null>
}

/** The lease on a campaign's session: one owner node, a fencing epoch, an expiry (database clock). */
export interface CampaignLeasesTable {
  campaign_id: string
  owner_node: string
  owner_url: string
  epoch: number
  expires_at: number
  /** 1 once the owner gave it up (its engine is gone): a new owner needs not wait. */
  released: Generated<number>
  /** 1 when the release handed the campaign over (a drain): another node should start it now. */
  handover: Generated<number>
}

export interface Database {
  campaigns: CampaignsTable
  cluster_nodes: ClusterNodesTable
  campaign_leases: CampaignLeasesTable
  sessions: SessionsTable
  webhook_endpoints: WebhookEndpointsTable
  webhook_deliveries: WebhookDeliveriesTable
}
