/**
 * The lease table of a cluster on PostgreSQL: who runs each campaign's session. One row per
 * campaign: the owner node (and how to reach it), an epoch that only grows (the fencing token),
 * and the expiry, all decided by the **database's** clock in one conditional statement, so two
 * nodes can never both win and no node's wall clock decides anything.
 *
 * Raw SQL on a `pg` pool of its own (not the store's Kysely layer): the statements are
 * PostgreSQL's (`ON CONFLICT … WHERE`, `clock_timestamp()`, `unnest`), and a lease renewal must
 * never queue behind the store's write-behind batches on a shared pool.
 *
 * @module
 */
import pg from 'pg'

/** The database's clock, in epoch milliseconds, at the moment the statement runs. */
const NOW_MS = `(extract(epoch from clock_timestamp()) * 1000)::bigint`

export interface NodeAddress {
  nodeId: string
  /** How the other nodes reach this one (`NODE_URL`). */
  url: string
}

/** A lease won: the fencing epoch, and what the campaign's previous lease was. */
export interface LeaseGrant {
  epoch: number
  /**
   * `none`: first lease; `released`: its owner gave it up (its engine is gone: start at once);
   * `expired`: its owner did not renew (wait `killBound + margin` before launching, in case the
   * old owner is paused and wakes to kill its browser); `own`: this node held it already.
   */
  previous: 'none' | 'released' | 'expired' | 'own'
  previousOwner: string | null
}

export interface LeaseHolder {
  nodeId: string
  url: string
  epoch: number
  /** Milliseconds until it expires by the database's clock (0 or less: expired). */
  expiresInMs: number
  released: boolean
}

export interface NodeHeartbeat extends NodeAddress {
  liveSessions: number
  maxSessions: number
  draining: boolean
}

export interface ClusterNode extends NodeHeartbeat {
  /** Milliseconds since its last heartbeat, by the database's clock. */
  silentForMs: number
}

const INT8_OID = 20

/**
 * A small pool of its own on the cluster's database (`DATABASE_URL`), with a statement timeout:
 * a renewal that cannot finish in time is a failed renewal, not a wait.
 */
export function openLeaseTable(
  url: string,
  { statementTimeoutMs = 3_000, maxConnections = 3 } = {}
): { table: LeaseTable; pool: pg.Pool } {
  const pool = new pg.Pool({
    connectionString: url,
    max: maxConnections,
    connectionTimeoutMillis: statementTimeoutMs,
    statement_timeout: statementTimeoutMs,
    query_timeout: statementTimeoutMs,
    application_name: 'qrvisor-cluster',
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === INT8_OID && format !== 'binary'
          ? (value: string) => Number(value)
          : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
    },
  })
  // A dropped idle connection must not take the process down; the next query reconnects.
  pool.on('error', () => undefined)
  return { table: new LeaseTable(pool), pool }
}

export class LeaseTable {
  constructor(private readonly pool: pg.Pool) {}

  /**
   * Takes the campaign's lease for `node` if it is free (never taken, released, or expired) or
   * already this node's; resolves with the grant, or with who holds it.
   */
  async acquire(
    campaignId: string,
    node: NodeAddress,
    ttlMs: number
  ): Promise<{ granted: LeaseGrant } | { heldBy: LeaseHolder }> {
    const { rows } = await this.pool.query<{
      epoch: number
      previous_owner: string | null
      previous_released: number | null
      previous_expires: number | null
      now: number
    }>(
      `with clock as (select ${NOW_MS} as t),
            old as (select owner_node, released, expires_at from campaign_leases where campaign_id = $1)
       insert into campaign_leases as l (campaign_id, owner_node, owner_url, epoch, expires_at, released)
       select $1, $2, $3, 1, clock.t + $4, 0 from clock
       on conflict (campaign_id) do update
          set owner_node = excluded.owner_node, owner_url = excluded.owner_url,
              epoch = l.epoch + 1, expires_at = excluded.expires_at, released = 0
        where l.released = 1 or l.expires_at <= (select t from clock) or l.owner_node = excluded.owner_node
       returning l.epoch,
                 (select owner_node from old) as previous_owner,
                 (select released from old) as previous_released,
                 (select expires_at from old) as previous_expires,
                 (select t from clock) as now`,
      [campaignId, node.nodeId, node.url, ttlMs]
    )
    const row = rows[0]
    if (!row) {
      const holder = await this.holderOf(campaignId)
      if (!holder) throw new Error(`the lease of ${campaignId} is neither free nor held`)
      return { heldBy: holder }
    }
    let previous: LeaseGrant['previous'] = 'none'
    if (row.previous_owner !== null) {
      if (row.previous_owner === node.nodeId) previous = 'own'
      else if (row.previous_released === 1) previous = 'released'
      else previous = 'expired'
    }
    return { granted: { epoch: row.epoch, previous, previousOwner: row.previous_owner } }
  }

  /**
   * Extends the leases this node holds (each at its epoch) that have not expired; resolves with
   * the campaigns renewed. A lease missing from the answer is lost: expired, released, or taken.
   */
  async renew(
    nodeId: string,
    held: ReadonlyArray<{ campaignId: string; epoch: number }>,
    ttlMs: number
  ): Promise<Set<string>> {
    if (held.length === 0) return new Set()
    const { rows } = await this.pool.query<{ campaign_id: string }>(
      `with clock as (select ${NOW_MS} as t)
       update campaign_leases as l set expires_at = clock.t + $4
         from clock, unnest($2::text[], $3::bigint[]) as h(campaign_id, epoch)
        where l.campaign_id = h.campaign_id and l.epoch = h.epoch and l.owner_node = $1
          and l.released = 0 and l.expires_at > clock.t
       returning l.campaign_id`,
      [nodeId, held.map((lease) => lease.campaignId), held.map((lease) => lease.epoch), ttlMs]
    )
    return new Set(rows.map((row) => row.campaign_id))
  }

  /** Gives the lease up (its engine is gone): a new owner may start at once. */
  async release(campaignId: string, nodeId: string, epoch: number): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `update campaign_leases set released = 1, expires_at = least(expires_at, ${NOW_MS})
        where campaign_id = $1 and owner_node = $2 and epoch = $3 and released = 0`,
      [campaignId, nodeId, epoch]
    )
    return (rowCount ?? 0) > 0
  }

  /** Who holds (or last held) the campaign's lease; undefined if it never had one. */
  async holderOf(campaignId: string): Promise<LeaseHolder | undefined> {
    const { rows } = await this.pool.query<{
      owner_node: string
      owner_url: string
      epoch: number
      expires_in: number
      released: number
    }>(
      `select owner_node, owner_url, epoch, expires_at - ${NOW_MS} as expires_in, released
         from campaign_leases where campaign_id = $1`,
      [campaignId]
    )
    const row = rows[0]
    return (
      row && {
        nodeId: row.owner_node,
        url: row.owner_url,
        epoch: row.epoch,
        expiresInMs: row.expires_in,
        released: row.released === 1,
      }
    )
  }

  /** Campaigns whose lease expired without a release (their node died): failover candidates. */
  async expired(limit = 1_000): Promise<Array<{ campaignId: string; nodeId: string }>> {
    const { rows } = await this.pool.query<{ campaign_id: string; owner_node: string }>(
      `select campaign_id, owner_node from campaign_leases
        where released = 0 and expires_at <= ${NOW_MS}
        order by expires_at limit $1`,
      [limit]
    )
    return rows.map((row) => ({ campaignId: row.campaign_id, nodeId: row.owner_node }))
  }

  /** Records that the node is alive, with its load. */
  async heartbeat(node: NodeHeartbeat): Promise<void> {
    await this.pool.query(
      `insert into cluster_nodes (node_id, url, heartbeat_at, started_at, live_sessions, max_sessions, draining)
       values ($1, $2, ${NOW_MS}, ${NOW_MS}, $3, $4, $5)
       on conflict (node_id) do update set url = excluded.url, heartbeat_at = excluded.heartbeat_at,
         live_sessions = excluded.live_sessions, max_sessions = excluded.max_sessions,
         draining = excluded.draining`,
      [node.nodeId, node.url, node.liveSessions, node.maxSessions, node.draining ? 1 : 0]
    )
  }

  /** The nodes heard from within `withinMs`, the least loaded first. */
  async liveNodes(withinMs: number): Promise<ClusterNode[]> {
    const { rows } = await this.pool.query<{
      node_id: string
      url: string
      live_sessions: number
      max_sessions: number
      draining: number
      silent_for: number
    }>(
      `select node_id, url, live_sessions, max_sessions, draining, ${NOW_MS} - heartbeat_at as silent_for
         from cluster_nodes where heartbeat_at > ${NOW_MS} - $1
        order by live_sessions::float / greatest(max_sessions, 1), node_id`,
      [withinMs]
    )
    return rows.map((row) => ({
      nodeId: row.node_id,
      url: row.url,
      liveSessions: row.live_sessions,
      maxSessions: row.max_sessions,
      draining: row.draining === 1,
      silentForMs: row.silent_for,
    }))
  }
}
