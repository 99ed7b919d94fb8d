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
   * old owner is paused and wakes to kill its browser), this node's name too (an earlier process
   * of it); `own`: this node held it already.
   */
  previous: 'none' | 'released' | 'expired' | 'own'
  previousOwner: string | null
  /** The previous lease was released as a handover (a drain): its campaign should run here now. */
  handover: boolean
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
  /** The token of its marker in `DATA_DIR` (see `sharedDataDir.ts`); absent: the stored one stays. */
  dataMarker?: string
}

/** A heartbeat refused: another live process holds the `NODE_ID`. */
export interface NodeIdInUse {
  /** Milliseconds since that process's last heartbeat, by the database's clock. */
  silentForMs: number
}

export interface ClusterNode extends NodeHeartbeat {
  /** Milliseconds since its last heartbeat, by the database's clock. */
  silentForMs: number
}

/**
 * A campaign some node should take now (`orphans`):
 * - `expired`: its lease expired unreleased: its node died or was cut off. Whatever the campaign's
 *   state: a linked one wanted running is restored, a pending session ends `node_lost`.
 * - `handover`: its owner released it for another node to run (a drain); linked and wanted running.
 * - `unleased`: linked and wanted running, and no node ever held a lease on it.
 */
export interface OrphanCampaign {
  campaignId: string
  kind: 'expired' | 'handover' | 'unleased'
  /** The node that held the lease last; null for `unleased`. */
  previousOwner: string | null
  /** The campaign's owner (a user), as in the store. */
  owner: string
  wanted: 'running' | 'stopped'
  linked: boolean
}

/** Orphans per scan, at most. */
export const MAX_ORPHANS = 1_000

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
      previous_handover: number | null
      previous_expired: boolean | null
    }>(
      `with clock as (select ${NOW_MS} as t),
            old as (select owner_node, released, handover, expires_at from campaign_leases where campaign_id = $1)
       insert into campaign_leases as l (campaign_id, owner_node, owner_url, epoch, expires_at, released, handover)
       select $1, $2, $3, 1, clock.t + $4, 0, 0 from clock
       on conflict (campaign_id) do update
          set owner_node = excluded.owner_node, owner_url = excluded.owner_url,
              epoch = l.epoch + 1, expires_at = excluded.expires_at, released = 0, handover = 0
        where l.released = 1 or l.expires_at <= (select t from clock) or l.owner_node = excluded.owner_node
       returning l.epoch,
                 (select owner_node from old) as previous_owner,
                 (select released from old) as previous_released,
                 (select handover from old) as previous_handover,
                 (select released = 0 and expires_at <= (select t from clock) from old) as previous_expired`,
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
      // Expired unreleased, even under this node's name: it may be an earlier process of this
      // node, paused rather than dead, whose browser runs until it wakes and kills it.
      if (row.previous_expired === true) previous = 'expired'
      else if (row.previous_owner === node.nodeId) previous = 'own'
      else previous = 'released'
    }
    return {
      granted: {
        epoch: row.epoch,
        previous,
        previousOwner: row.previous_owner,
        handover: row.previous_handover === 1,
      },
    }
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
      // The rows are locked in campaign order, as the store's fenced writes lock them
      // (\`FOR SHARE\`), so a renewal and a batch of writes never deadlock.
      `with clock as (select ${NOW_MS} as t),
            held as (
              select l.campaign_id from campaign_leases l
                join unnest($2::text[], $3::bigint[]) as h(campaign_id, epoch)
                  on l.campaign_id = h.campaign_id and l.epoch = h.epoch
               where l.owner_node = $1 and l.released = 0 and l.expires_at > (select t from clock)
               order by l.campaign_id
                 for update of l)
       update campaign_leases as l set expires_at = clock.t + $4
         from clock, held
        where l.campaign_id = held.campaign_id
       returning l.campaign_id`,
      [nodeId, held.map((lease) => lease.campaignId), held.map((lease) => lease.epoch), ttlMs]
    )
    return new Set(rows.map((row) => row.campaign_id))
  }

  /**
   * Gives the lease up (its engine is gone): a new owner may start at once. With `handover`, the
   * campaign should keep running: `orphans` offers it to the other nodes.
   */
  async release(
    campaignId: string,
    nodeId: string,
    epoch: number,
    { handover = false }: { handover?: boolean } = {}
  ): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `update campaign_leases set released = 1, handover = $4, expires_at = least(expires_at, ${NOW_MS})
        where campaign_id = $1 and owner_node = $2 and epoch = $3 and released = 0`,
      [campaignId, nodeId, epoch, handover ? 1 : 0]
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

  /**
   * Campaigns some node should take now, the longest waiting first (by their lease's expiry or
   * release; an unleased one by its last change): see `OrphanCampaign`. At most `limit` (up to
   * `MAX_ORPHANS`). Taking one is `acquire`: one node wins.
   */
  async orphans(limit = MAX_ORPHANS): Promise<OrphanCampaign[]> {
    const bounded = Math.min(Math.floor(limit), MAX_ORPHANS)
    if (!(bounded > 0)) return []
    const { rows } = await this.pool.query<{
      campaign_id: string
      kind: OrphanCampaign['kind']
      previous_owner: string | null
      owner: string
      wanted: string
      linked: number
    }>(
      // Three index-driven parts, each bounded, then merged: no part scans every campaign.
      `with clock as (select ${NOW_MS} as t),
       expired as (
         select l.campaign_id, 'expired' as kind, l.owner_node, l.expires_at as since
           from campaign_leases l
           join campaigns c on c.campaign_id = l.campaign_id
          where l.released = 0 and l.expires_at <= (select t from clock)
          order by l.expires_at limit $1),
       handed_over as (
         select l.campaign_id, 'handover' as kind, l.owner_node, l.expires_at as since
           from campaign_leases l
           join campaigns c on c.campaign_id = l.campaign_id
          where l.handover = 1 and l.released = 1 and c.wanted = 'running' and c.linked = 1
          order by l.expires_at limit $1),
       unleased as (
         select c.campaign_id, 'unleased' as kind, null as owner_node, c.updated_at as since
           from campaigns c
          where c.wanted = 'running' and c.linked = 1
            and not exists (select 1 from campaign_leases l where l.campaign_id = c.campaign_id)
          order by c.updated_at limit $1),
       found as (select * from expired union all select * from handed_over union all select * from unleased)
       select f.campaign_id, f.kind, f.owner_node as previous_owner, c.owner, c.wanted, c.linked
         from found f join campaigns c on c.campaign_id = f.campaign_id
        order by f.since, f.campaign_id
        limit $1`,
      [bounded]
    )
    return rows.map((row) => ({
      campaignId: row.campaign_id,
      kind: row.kind,
      previousOwner: row.previous_owner,
      owner: row.owner,
      wanted: row.wanted === 'running' ? 'running' : 'stopped',
      linked: row.linked === 1,
    }))
  }

  /**
   * The sessions other nodes run now (their lease unexpired, their record not ended), as the
   * store last has them: what a node that starts or reconnects its listener shows for them until
   * their next event.
   */
  async sessionsElsewhere(
    nodeId: string,
    limit = 100_000
  ): Promise<
    Array<{
      campaignId: string
      nodeId: string
      owner: string
      sessionId: string
      status: string
      reason: string | null
      updatedAt: number
      lastSeenAlive: number | null
    }>
  > {
    const { rows } = await this.pool.query<{
      campaign_id: string
      owner_node: string
      owner: string
      session_id: string
      status: string
      reason: string | null
      updated_at: number
      last_seen_alive: number | null
    }>(
      `select distinct on (l.campaign_id) l.campaign_id, l.owner_node, c.owner, s.session_id,
              s.status, s.reason, s.updated_at, s.last_seen_alive
         from campaign_leases l
         join campaigns c on c.campaign_id = l.campaign_id
         join sessions s on s.campaign_id = l.campaign_id and s.ended_at is null
        where l.released = 0 and l.expires_at > ${NOW_MS} and l.owner_node <> $1
        order by l.campaign_id, s.started_at desc
        limit $2`,
      [nodeId, limit]
    )
    return rows.map((row) => ({
      campaignId: row.campaign_id,
      nodeId: row.owner_node,
      owner: row.owner,
      sessionId: row.session_id,
      status: row.status,
      reason: row.reason,
      updatedAt: row.updated_at,
      lastSeenAlive: row.last_seen_alive,
    }))
  }

  /**
   * Records that the node is alive, with its load (and its `DATA_DIR` marker's token when given;
   * otherwise the stored one stays), as the process `instance`. Refused while another process
   * holds the node's `NODE_ID` and was heard from within `staleAfterMs`: resolves with how long
   * it has been silent.
   */
  async heartbeat(
    node: NodeHeartbeat,
    instance: string,
    staleAfterMs: number
  ): Promise<NodeIdInUse | undefined> {
    const { rowCount } = await this.pool.query(
      `insert into cluster_nodes (node_id, url, heartbeat_at, started_at, live_sessions, max_sessions, draining, data_marker, instance)
       values ($1, $2, ${NOW_MS}, ${NOW_MS}, $3, $4, $5, $6, $7)
       on conflict (node_id) do update set url = excluded.url, heartbeat_at = excluded.heartbeat_at,
         started_at = case when cluster_nodes.instance is not distinct from excluded.instance
                           then cluster_nodes.started_at else excluded.started_at end,
         live_sessions = excluded.live_sessions, max_sessions = excluded.max_sessions,
         draining = excluded.draining,
         data_marker = case when cluster_nodes.instance is not distinct from excluded.instance
                            then coalesce(excluded.data_marker, cluster_nodes.data_marker)
                            else excluded.data_marker end,
         instance = excluded.instance
       where cluster_nodes.instance is null or cluster_nodes.instance = excluded.instance
          or cluster_nodes.heartbeat_at <= ${NOW_MS} - $8`,
      [
        node.nodeId,
        node.url,
        node.liveSessions,
        node.maxSessions,
        node.draining ? 1 : 0,
        node.dataMarker ?? null,
        instance,
        staleAfterMs,
      ]
    )
    if ((rowCount ?? 0) > 0) return undefined
    const { rows } = await this.pool.query<{ silent_for: number }>(
      `select ${NOW_MS} - heartbeat_at as silent_for from cluster_nodes where node_id = $1`,
      [node.nodeId]
    )
    return { silentForMs: rows[0]?.silent_for ?? 0 }
  }

  /**
   * Publishes the token of the node's `DATA_DIR` marker (after its first heartbeat); false if the
   * node has no heartbeat row.
   */
  async publishDataMarker(nodeId: string, token: string): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `update cluster_nodes set data_marker = $2 where node_id = $1`,
      [nodeId, token]
    )
    return (rowCount ?? 0) > 0
  }

  /** Removes the node's heartbeat row (a clean shutdown): it is no longer a live node. */
  async leave(nodeId: string, instance: string): Promise<void> {
    await this.pool.query(`delete from cluster_nodes where node_id = $1 and instance = $2`, [
      nodeId,
      instance,
    ])
  }

  /** The nodes heard from within `withinMs`, the least loaded first. */
  async liveNodes(withinMs: number): Promise<ClusterNode[]> {
    const { rows } = await this.pool.query<{
      node_id: string
      url: string
      live_sessions: number
      max_sessions: number
      draining: number
      data_marker: string | null
      silent_for: number
    }>(
      `select node_id, url, live_sessions, max_sessions, draining, data_marker,
              ${NOW_MS} - heartbeat_at as silent_for
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
      ...(row.data_marker !== null ? { dataMarker: row.data_marker } : {}),
    }))
  }
}
