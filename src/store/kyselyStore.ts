/**
 * The campaign store over Kysely: every query, for SQLite and PostgreSQL alike. `sqlite.ts` and
 * `postgres.ts` open the database, map open failures to clear errors and hand a migrated
 * `Kysely<Database>` here.
 *
 * @module
 */
import { sql, type Kysely, type Selectable, type Transaction } from 'kysely'
import { delay, systemClock, type Clock, type TimerHandle } from '../clock.ts'
import { silentLogger, type Logger } from '../logger.ts'
import {
  DEFAULT_BOUNDS,
  DEFAULT_WRITE_BEHIND,
  type BatchReport,
  type CampaignRecord,
  type CampaignStore,
  type HistoryRecord,
  type SessionRecord,
  type StoreBounds,
  type StoreKind,
  type WantedState,
  type WriteBehindOptions,
} from './campaignStore.ts'
import { ClaimBatcher, type Claim } from './claimBatcher.ts'
import { StoreClosedError } from './errors.ts'
import type { Database, SessionsTable } from './schema.ts'
import { WriteBehind } from './writeBehind.ts'

/** What every store takes, whichever database is behind it. */
export interface StoreOptions {
  logger?: Logger
  clock?: Clock
  bounds?: Partial<StoreBounds>
  writeBehind?: Partial<WriteBehindOptions>
  /** How often `prune` runs by itself; 0: never (default: 10 minutes). */
  pruneIntervalMs?: number
  /** How long `close` retries writing what is queued before it gives up (default: 5 s). */
  closeTimeoutMs?: number
  /** Called after each written batch (metrics, benchmarks). */
  onBatch?: (report: BatchReport) => void
}

export interface KyselyStoreDeps extends StoreOptions {
  db: Kysely<Database>
  kind: StoreKind
  location: string
  /** True for a driver error retrying cannot fix (a constraint violation). */
  isPermanent(error: unknown): boolean
  /** Claim groups committed at once (see `ClaimBatcher`). */
  claimConcurrency: number
}

/** A write-behind change: a whole session record, or some fields of a campaign. */
type Change =
  | { kind: 'session'; record: SessionRecord }
  | { kind: 'campaign'; campaignId: string; wanted?: WantedState; linked?: boolean; at: number }

type CampaignChange = Extract<Change, { kind: 'campaign' }>

/** Claims per statement: well under both databases' parameter limits. */
const MAX_CLAIMS_PER_BATCH = 200
const MAX_PAGE = 1_000
const PRUNE_CHUNK = 500

export function createKyselyStore(deps: KyselyStoreDeps): CampaignStore {
  const {
    db,
    kind,
    location,
    logger = silentLogger,
    clock = systemClock,
    pruneIntervalMs = 10 * 60_000,
    closeTimeoutMs = 5_000,
  } = deps
  const bounds: StoreBounds = { ...DEFAULT_BOUNDS, ...deps.bounds }
  let closed = false
  let closing: Promise<void> | undefined
  let pruning: Promise<number> | undefined
  let pruneTimer: TimerHandle | undefined

  const claims = new ClaimBatcher(claimMany, {
    maxBatch: MAX_CLAIMS_PER_BATCH,
    maxInFlight: deps.claimConcurrency,
  })
  const writes = new WriteBehind<Change>({
    options: { ...DEFAULT_WRITE_BEHIND, ...deps.writeBehind },
    clock,
    logger,
    location,
    keyOf: (change) =>
      change.kind === 'session' ? `s:${change.record.sessionId}` : `c:${change.campaignId}`,
    merge: (queued, newer) =>
      queued.kind === 'campaign' && newer.kind === 'campaign'
        ? {
            kind: 'campaign',
            campaignId: newer.campaignId,
            wanted: newer.wanted ?? queued.wanted,
            linked: newer.linked ?? queued.linked,
            at: newer.at,
          }
        : newer,
    write: writeChanges,
    isPermanent: deps.isPermanent,
    describe: (change) =>
      change.kind === 'session'
        ? { campaignId: change.record.campaignId, sessionId: change.record.sessionId }
        : { campaignId: change.campaignId },
    ...(deps.onBatch ? { onBatch: deps.onBatch } : {}),
  })

  async function claimMany(batch: Claim[]) {
    const now = clock.now()
    // Within one batch the first claim of a campaign is the one that may create it.
    const first = new Map<string, Claim>()
    for (const claim of batch) if (!first.has(claim.campaignId)) first.set(claim.campaignId, claim)
    const ids = [...first.keys()]
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
    const taken = ids.filter((id) => !created.has(id))
    if (taken.length > 0) {
      const rows = await db
        .selectFrom('campaigns')
        .select(['campaign_id', 'owner'])
        .where('campaign_id', 'in', taken)
        .execute()
      for (const row of rows) owners.set(row.campaign_id, row.owner)
    }
    return batch.map((claim) => ({
      owner: owners.get(claim.campaignId)!,
      created: created.has(claim.campaignId) && first.get(claim.campaignId) === claim,
    }))
  }

  /** One batch of write-behind changes, in one transaction. */
  async function writeChanges(changes: Change[]): Promise<void> {
    const sessions: SessionRecord[] = []
    const campaigns: CampaignChange[] = []
    for (const change of changes) {
      if (change.kind === 'session') sessions.push(change.record)
      else campaigns.push(change)
    }
    const missing = await db.transaction().execute(async (trx) => {
      if (sessions.length > 0) await upsertSessions(trx, sessions)
      const missing = await updateCampaigns(trx, campaigns)
      const ended = new Set(
        sessions.filter((record) => record.endedAt !== null).map((record) => record.campaignId)
      )
      if (ended.size > 0) await trimEndedSessions(trx, [...ended])
      return missing
    })
    for (const campaignId of missing) {
      logger.warn({ campaignId }, 'store: a change to a campaign that was never claimed is ignored')
    }
  }

  async function upsertSessions(trx: Transaction<Database>, records: SessionRecord[]) {
    await trx
      .insertInto('sessions')
      .values(records.map(toSessionRow))
      .onConflict((conflict) =>
        conflict.column('session_id').doUpdateSet((eb) => ({
          status: eb.ref('excluded.status'),
          reason: eb.ref('excluded.reason'),
          detail: eb.ref('excluded.detail'),
          history: eb.ref('excluded.history'),
          updated_at: eb.ref('excluded.updated_at'),
          ended_at: eb.ref('excluded.ended_at'),
        }))
      )
      .execute()
  }

  /** Sets the changed fields, one statement per distinct change; returns the campaigns not found. */
  async function updateCampaigns(trx: Transaction<Database>, changes: CampaignChange[]) {
    const groups = new Map<string, CampaignChange[]>()
    for (const change of changes) {
      const key = `${change.wanted ?? ''}|${change.linked ?? ''}`
      const group = groups.get(key)
      if (group) group.push(change)
      else groups.set(key, [change])
    }
    const missing: string[] = []
    for (const group of groups.values()) {
      const { wanted, linked } = group[0]!
      const ids = group.map((change) => change.campaignId)
      const updated = await trx
        .updateTable('campaigns')
        .set({
          ...(wanted !== undefined ? { wanted } : {}),
          ...(linked !== undefined ? { linked: linked ? 1 : 0 } : {}),
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

  /** Keeps the newest `endedSessionsMax` ended sessions of each of these campaigns. */
  async function trimEndedSessions(trx: Transaction<Database>, campaignIds: string[]) {
    await trx
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

  function toSessionRow(record: SessionRecord) {
    return {
      session_id: record.sessionId,
      campaign_id: record.campaignId,
      status: record.status,
      reason: record.reason,
      detail: record.detail,
      history: JSON.stringify(record.history.slice(-bounds.historyMaxEntries)),
      started_at: record.startedAt,
      updated_at: record.updatedAt,
      ended_at: record.endedAt,
    }
  }

  /** Campaigns with their most recently started session (if any). */
  function selectCampaigns() {
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
            }),
    }
  }

  function assertOpen(): void {
    if (closed) throw new StoreClosedError(location)
  }

  /** Runs age pruning in chunks, yielding between them (SQLite's statements block the loop). */
  async function pruneNow(): Promise<number> {
    await writes.flush()
    const cutoff = clock.now() - bounds.endedSessionsTtlMs
    let deleted = 0
    for (;;) {
      const result = await db
        .deleteFrom('sessions')
        .where('session_id', 'in', (eb) =>
          eb
            .selectFrom('sessions as old')
            .select('old.session_id')
            .where('old.ended_at', '<', cutoff)
            // Not the most recent ended session of its campaign: that one is kept at any age.
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
            .limit(PRUNE_CHUNK)
        )
        .executeTakeFirst()
      const count = Number(result.numDeletedRows)
      deleted += count
      if (count < PRUNE_CHUNK) return deleted
      await delay(clock, 0)
    }
  }

  function schedulePrune(): void {
    if (pruneIntervalMs <= 0 || closed) return
    pruneTimer = clock.setTimeout(() => {
      pruneTimer = undefined
      store.prune().then(
        (deleted) => {
          if (deleted > 0) logger.info({ deleted }, 'store: pruned old ended sessions')
        },
        (error: unknown) => logger.warn({ err: String(error) }, 'store: pruning failed')
      )
      schedulePrune()
    }, pruneIntervalMs)
  }

  const store: CampaignStore = {
    kind,
    location,

    claim(campaignId, owner) {
      if (closed) return Promise.reject(new StoreClosedError(location))
      return claims.claim(campaignId, owner)
    },

    setWanted(campaignId, wanted) {
      assertOpen()
      writes.enqueue({ kind: 'campaign', campaignId, wanted, at: clock.now() })
    },

    setLinked(campaignId, linked) {
      assertOpen()
      writes.enqueue({ kind: 'campaign', campaignId, linked, at: clock.now() })
    },

    saveSession(record) {
      assertOpen()
      writes.enqueue({ kind: 'session', record })
    },

    flush() {
      return writes.flush()
    },

    async getCampaign(campaignId) {
      assertOpen()
      await writes.flush()
      const row = await selectCampaigns().where('c.campaign_id', '=', campaignId).executeTakeFirst()
      return row && toCampaignRecord(row)
    },

    async listCampaigns({ owner, wanted, linked, after, limit = MAX_PAGE } = {}) {
      assertOpen()
      await writes.flush()
      let query = selectCampaigns()
      if (owner !== undefined) query = query.where('c.owner', '=', owner)
      if (wanted !== undefined) query = query.where('c.wanted', '=', wanted)
      if (linked !== undefined) query = query.where('c.linked', '=', linked ? 1 : 0)
      if (after !== undefined) query = query.where('c.campaign_id', '>', after)
      const rows = await query
        .orderBy('c.campaign_id')
        .limit(Math.max(1, Math.min(limit, MAX_PAGE)))
        .execute()
      return rows.map(toCampaignRecord)
    },

    async getSession(sessionId) {
      assertOpen()
      await writes.flush()
      const row = await db
        .selectFrom('sessions')
        .selectAll()
        .where('session_id', '=', sessionId)
        .executeTakeFirst()
      return row && toSessionRecord(row)
    },

    async listSessions(campaignId) {
      assertOpen()
      await writes.flush()
      const rows = await db
        .selectFrom('sessions')
        .selectAll()
        .where('campaign_id', '=', campaignId)
        .orderBy('started_at', 'desc')
        .orderBy('session_id', 'desc')
        .execute()
      return rows.map(toSessionRecord)
    },

    prune() {
      if (closed) return Promise.reject(new StoreClosedError(location))
      pruning ??= pruneNow().finally(() => (pruning = undefined))
      return pruning
    },

    health() {
      return { kind, location, ...writes.stats() }
    },

    close() {
      closing ??= (async () => {
        closed = true
        if (pruneTimer !== undefined) clock.clearTimeout(pruneTimer)
        try {
          await claims.idle()
          await pruning?.catch(() => undefined)
          await writes.close(closeTimeoutMs)
        } finally {
          await db.destroy()
        }
      })()
      return closing
    },
  }
  schedulePrune()
  return store
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
  }
}
