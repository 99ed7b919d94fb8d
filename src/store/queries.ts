/**
 * Every query of the campaign store, written once for SQLite and PostgreSQL (Kysely compiles each
 * for its dialect). Plain functions of a `Kysely<Database>`; batching, the write-behind queue and
 * the store's lifecycle are in `kyselyStore.ts`.
 *
 * @module
 */
import { sql, type Kysely, type Selectable } from 'kysely'
import type {
  CampaignQuery,
  CampaignRecord,
  ClaimResult,
  HistoryRecord,
  SessionRecord,
  StoreBounds,
  WantedState,
  WriteFence,
} from './campaignStore.ts'
import type { Claim } from './claimBatcher.ts'
import type { Database, SessionsTable } from './schema.ts'

/** A write-behind change: a whole session record, or some fields of a campaign. */
export type StoreChange =
  | { kind: 'session'; record: SessionRecord; fence?: WriteFence }
  | {
      kind: 'campaign'
      campaignId: string
      wanted?: WantedState
      linked?: boolean
      /** The lease `linked` is written under (the other fields are not fenced). */
      linkedFence?: WriteFence
      /** JSON text; null clears it. */
      proxy?: string | null
      at: number
    }

type CampaignChange = Extract<StoreChange, { kind: 'campaign' }>

/** Campaigns per page of `listCampaigns`, at most. */
export const MAX_PAGE = 1_000

/**
 * Claims campaigns; the results are in the claims' order. A campaign's first claim in `claims` is
 * the one that may create it.
 */
export async function claimCampaigns(
  db: Kysely<Database>,
  claims: Claim[],
  now: number
): Promise<ClaimResult[]> {
  const first = new Map<string, Claim>()
  for (const claim of claims) if (!first.has(claim.campaignId)) first.set(claim.campaignId, claim)
  // A conditional insert, not a read then a write: concurrent claims (other connections, other
  // processes) of one campaign have exactly one winner, decided by the primary key.
  const inserted = await db
    .insertInto('campaigns')
    .values(
      [...first.values()].map((claim) => ({
        campaign_id: claim.campaignId,
        owner: claim.owner,
        wanted: 'running',
        linked: 0,
        created_at: now,
        updated_at: now,
      }))
    )
    .onConflict((conflict) => conflict.column('campaign_id').doNothing())
    .returning(['campaign_id', 'owner'])
    .execute()
  const created = new Set(inserted.map((row) => row.campaign_id))
  const owners = new Map(inserted.map((row) => [row.campaign_id, row.owner]))
  // The others were claimed before. No transaction is needed around the two statements: an
  // owner, once committed, never changes and is never deleted.
  const taken = [...first.keys()].filter((id) => !created.has(id))
  if (taken.length > 0) {
    const rows = await db
      .selectFrom('campaigns')
      .select(['campaign_id', 'owner'])
      .where('campaign_id', 'in', taken)
      .execute()
    for (const row of rows) owners.set(row.campaign_id, row.owner)
  }
  return claims.map((claim) => ({
    owner: owners.get(claim.campaignId)!,
    created: created.has(claim.campaignId) && first.get(claim.campaignId) === claim,
  }))
}

/** A fenced write refused: its campaign's lease names another node or epoch, or none. */
export interface FencedWrite {
  campaignId: string
  /** The session record refused; absent for a campaign's `linked`. */
  sessionId?: string
  fence: WriteFence
}

export interface WrittenChanges {
  /** Campaigns changed but never claimed (nothing was written for them). */
  missing: string[]
  /** Fenced writes refused (dropped). */
  fenced: FencedWrite[]
}

/**
 * Writes a batch of changes in one transaction, keeping the bounds of the campaigns it touches.
 * With `fencing` (PostgreSQL), a fenced change is written only if its campaign's lease row still
 * names its node and epoch: those rows are read `FOR SHARE` in the same transaction, so no lease
 * can move on between the check and the commit (an acquisition waits for the commit).
 */
export async function writeChanges(
  db: Kysely<Database>,
  changes: StoreChange[],
  bounds: StoreBounds,
  { fencing = false }: { fencing?: boolean } = {}
): Promise<WrittenChanges> {
  return db.transaction().execute(async (trx) => {
    const fenced: FencedWrite[] = []
    const allowed = fencing ? await fenceCheck(trx, changes) : () => true
    const sessions: SessionRecord[] = []
    const campaigns: CampaignChange[] = []
    for (const change of changes) {
      if (change.kind === 'session') {
        if (allowed(change.record.campaignId, change.fence)) sessions.push(change.record)
        else {
          fenced.push({
            campaignId: change.record.campaignId,
            sessionId: change.record.sessionId,
            fence: change.fence!,
          })
        }
      } else if (change.linked === undefined || allowed(change.campaignId, change.linkedFence)) {
        campaigns.push(change)
      } else {
        fenced.push({ campaignId: change.campaignId, fence: change.linkedFence! })
        // Its other fields are not fenced (a start or a stop asked of any node).
        const { campaignId, wanted, proxy, at } = change
        if (wanted !== undefined || proxy !== undefined) {
          campaigns.push({
            kind: 'campaign',
            campaignId,
            at,
            ...(wanted !== undefined ? { wanted } : {}),
            ...(proxy !== undefined ? { proxy } : {}),
          })
        }
      }
    }
    if (sessions.length > 0) await upsertSessions(trx, sessions, bounds)
    const missing = await updateCampaigns(trx, campaigns)
    const ended = new Set(
      sessions.filter((record) => record.endedAt !== null).map((record) => record.campaignId)
    )
    if (ended.size > 0) await trimEndedSessions(trx, [...ended], bounds)
    return { missing, fenced }
  })
}

/**
 * Reads the lease rows of the fenced changes' campaigns `FOR SHARE`, in campaign order (as
 * `LeaseTable.renew` locks them, so the two never deadlock); answers whether a fence holds.
 */
async function fenceCheck(
  trx: Kysely<Database>,
  changes: StoreChange[]
): Promise<(campaignId: string, fence: WriteFence | undefined) => boolean> {
  const ids = new Set<string>()
  for (const change of changes) {
    if (change.kind === 'session' && change.fence) ids.add(change.record.campaignId)
    if (change.kind === 'campaign' && change.linkedFence) ids.add(change.campaignId)
  }
  if (ids.size === 0) return () => true
  const rows = await trx
    .selectFrom('campaign_leases')
    .select(['campaign_id', 'owner_node', 'epoch'])
    .where('campaign_id', 'in', [...ids])
    .orderBy('campaign_id')
    .forShare()
    .execute()
  const leases = new Map(rows.map((row) => [row.campaign_id, row]))
  return (campaignId, fence) => {
    if (fence === undefined) return true
    const lease = leases.get(campaignId)
    return lease !== undefined && lease.owner_node === fence.nodeId && lease.epoch === fence.epoch
  }
}

async function upsertSessions(db: Kysely<Database>, records: SessionRecord[], bounds: StoreBounds) {
  await db
    .insertInto('sessions')
    .values(
      records.map((record) => ({
        session_id: record.sessionId,
        campaign_id: record.campaignId,
        status: record.status,
        reason: record.reason,
        detail: record.detail,
        history: JSON.stringify(record.history.slice(-bounds.historyMaxEntries)),
        started_at: record.startedAt,
        updated_at: record.updatedAt,
        ended_at: record.endedAt,
        last_seen_alive: record.lastSeenAlive,
        node: record.node ?? null,
      }))
    )
    .onConflict((conflict) =>
      conflict.column('session_id').doUpdateSet((eb) => ({
        status: eb.ref('excluded.status'),
        reason: eb.ref('excluded.reason'),
        detail: eb.ref('excluded.detail'),
        history: eb.ref('excluded.history'),
        updated_at: eb.ref('excluded.updated_at'),
        ended_at: eb.ref('excluded.ended_at'),
        last_seen_alive: eb.ref('excluded.last_seen_alive'),
        node: eb.ref('excluded.node'),
      }))
    )
    .execute()
}

/**
 * Sets the changed fields, one statement per distinct change (there are few: `wanted` and
 * `linked` take two values each); returns the campaigns not found.
 */
async function updateCampaigns(db: Kysely<Database>, changes: CampaignChange[]) {
  const groups = new Map<string, CampaignChange[]>()
  for (const change of changes) {
    // A proxy is the campaign's own: a change of it shares a statement only with the same value.
    const key = `${change.wanted ?? ''}|${change.linked ?? ''}|${change.proxy === undefined ? '' : JSON.stringify(change.proxy)}`
    const group = groups.get(key)
    if (group) group.push(change)
    else groups.set(key, [change])
  }
  const missing: string[] = []
  for (const group of groups.values()) {
    const { wanted, linked, proxy } = group[0]!
    const ids = group.map((change) => change.campaignId)
    const updated = await db
      .updateTable('campaigns')
      .set({
        ...(wanted !== undefined ? { wanted } : {}),
        ...(linked !== undefined ? { linked: linked ? 1 : 0 } : {}),
        ...(proxy !== undefined ? { proxy } : {}),
        updated_at: Math.max(...group.map((change) => change.at)),
      })
      .where('campaign_id', 'in', ids)
      .returning('campaign_id')
      .execute()
    if (updated.length < ids.length) {
      const found = new Set(updated.map((row) => row.campaign_id))
      missing.push(...ids.filter((id) => !found.has(id)))
    }
  }
  return missing
}

/** Keeps the `endedSessionsMax` most recently started ended sessions of each of these campaigns. */
async function trimEndedSessions(db: Kysely<Database>, campaignIds: string[], bounds: StoreBounds) {
  await db
    .deleteFrom('sessions')
    .where('session_id', 'in', (eb) =>
      eb
        .selectFrom(
          eb
            .selectFrom('sessions')
            .select([
              'session_id',
              sql<number>`row_number() over (partition by campaign_id order by started_at desc, session_id desc)`.as(
                'newness'
              ),
            ])
            .where('campaign_id', 'in', campaignIds)
            .where('ended_at', 'is not', null)
            .as('ranked')
        )
        .select('ranked.session_id')
        .where('ranked.newness', '>', bounds.endedSessionsMax)
    )
    .execute()
}

/**
 * Deletes up to `limit` sessions that ended before `cutoff`, except the most recent ended session
 * of each campaign; resolves with how many.
 */
export async function deleteExpiredSessions(
  db: Kysely<Database>,
  cutoff: number,
  limit: number
): Promise<number> {
  const result = await db
    .deleteFrom('sessions')
    .where('session_id', 'in', (eb) =>
      eb
        .selectFrom('sessions as old')
        .select('old.session_id')
        .where('old.ended_at', '<', cutoff)
        .where(({ exists, selectFrom }) =>
          exists(
            selectFrom('sessions as newer')
              .select('newer.session_id')
              .whereRef('newer.campaign_id', '=', 'old.campaign_id')
              .where('newer.ended_at', 'is not', null)
              .where((eb) =>
                eb.or([
                  eb('newer.started_at', '>', eb.ref('old.started_at')),
                  eb.and([
                    eb('newer.started_at', '=', eb.ref('old.started_at')),
                    eb('newer.session_id', '>', eb.ref('old.session_id')),
                  ]),
                ])
              )
          )
        )
        .limit(limit)
    )
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}

export async function findCampaign(
  db: Kysely<Database>,
  campaignId: string
): Promise<CampaignRecord | undefined> {
  const row = await selectCampaigns(db).where('c.campaign_id', '=', campaignId).executeTakeFirst()
  return row && toCampaignRecord(row)
}

export async function listCampaigns(
  db: Kysely<Database>,
  { owner, wanted, linked, after, limit = MAX_PAGE }: CampaignQuery
): Promise<CampaignRecord[]> {
  let query = selectCampaigns(db)
  if (owner !== undefined) query = query.where('c.owner', '=', owner)
  if (wanted !== undefined) query = query.where('c.wanted', '=', wanted)
  if (linked !== undefined) query = query.where('c.linked', '=', linked ? 1 : 0)
  if (after !== undefined) query = query.where('c.campaign_id', '>', after)
  const rows = await query
    .orderBy('c.campaign_id')
    .limit(Math.max(1, Math.min(limit, MAX_PAGE)))
    .execute()
  return rows.map(toCampaignRecord)
}

export async function findSession(
  db: Kysely<Database>,
  sessionId: string
): Promise<SessionRecord | undefined> {
  const row = await db
    .selectFrom('sessions')
    .selectAll()
    .where('session_id', '=', sessionId)
    .executeTakeFirst()
  return row && toSessionRecord(row)
}

/** A campaign's sessions, the most recently started first. */
export async function listSessions(
  db: Kysely<Database>,
  campaignId: string
): Promise<SessionRecord[]> {
  const rows = await db
    .selectFrom('sessions')
    .selectAll()
    .where('campaign_id', '=', campaignId)
    .orderBy('started_at', 'desc')
    .orderBy('session_id', 'desc')
    .execute()
  return rows.map(toSessionRecord)
}

/** Campaigns with their most recently started session (if any). */
function selectCampaigns(db: Kysely<Database>) {
  return db
    .selectFrom('campaigns as c')
    .leftJoin('sessions as s', (join) =>
      join.on((eb) =>
        eb(
          's.session_id',
          '=',
          eb
            .selectFrom('sessions as latest')
            .select('latest.session_id')
            .whereRef('latest.campaign_id', '=', 'c.campaign_id')
            .orderBy('latest.started_at', 'desc')
            .orderBy('latest.session_id', 'desc')
            .limit(1)
        )
      )
    )
    .select([
      'c.campaign_id',
      'c.owner',
      'c.wanted',
      'c.linked',
      'c.proxy',
      'c.created_at',
      'c.updated_at',
      's.session_id',
      's.status',
      's.reason',
      's.detail',
      's.history',
      's.started_at',
      's.updated_at as session_updated_at',
      's.ended_at',
      's.last_seen_alive',
      's.node',
    ])
}

type CampaignRow = Awaited<
  ReturnType<ReturnType<typeof selectCampaigns>['executeTakeFirstOrThrow']>
>

function toCampaignRecord(row: CampaignRow): CampaignRecord {
  return {
    campaignId: row.campaign_id,
    owner: row.owner,
    wanted: row.wanted as WantedState,
    linked: row.linked === 1,
    proxy: row.proxy,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    lastSession:
      row.session_id === null
        ? null
        : toSessionRecord({
            session_id: row.session_id,
            campaign_id: row.campaign_id,
            status: row.status!,
            reason: row.reason,
            detail: row.detail,
            history: row.history!,
            started_at: row.started_at!,
            updated_at: row.session_updated_at!,
            ended_at: row.ended_at,
            last_seen_alive: row.last_seen_alive,
            node: row.node,
          }),
  }
}

function toSessionRecord(row: Selectable<SessionsTable>): SessionRecord {
  return {
    sessionId: row.session_id,
    campaignId: row.campaign_id,
    status: row.status,
    reason: row.reason,
    detail: row.detail,
    history: JSON.parse(row.history) as HistoryRecord[],
    startedAt: row.started_at,
    updatedAt: row.updated_at,
    endedAt: row.ended_at,
    lastSeenAlive: row.last_seen_alive,
    node: row.node,
  }
}
