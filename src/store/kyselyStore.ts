/**
 * The campaign store over a migrated `Kysely<Database>`, for SQLite and PostgreSQL alike: claims
 * grouped into durable commits, everything else through the write-behind queue, pruning on a
 * timer, and an orderly close. `sqlite.ts` and `postgres.ts` open the database and map open
 * failures to clear errors; the SQL is in `queries.ts`.
 *
 * @module
 */
import type { Kysely } from 'kysely'
import { delay, systemClock, type Clock, type TimerHandle } from '../clock.ts'
import { silentLogger, type Logger } from '../logger.ts'
import { sessionTag } from '../sessionTag.ts'
import {
  DEFAULT_BOUNDS,
  DEFAULT_WRITE_BEHIND,
  type BatchReport,
  type CampaignStore,
  type StoreBounds,
  type StoreKind,
  type WriteBehindOptions,
} from './campaignStore.ts'
import { ClaimBatcher } from './claimBatcher.ts'
import { createKyselyOutbox } from './kyselyOutbox.ts'
import { StoreClosedError } from './errors.ts'
import {
  claimCampaigns,
  deleteExpiredSessions,
  findCampaign,
  findSession,
  listCampaigns,
  listSessions,
  writeChanges,
  type FencedWrite,
  type StoreChange,
} from './queries.ts'
import type { Database } from './schema.ts'
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
  /** Whether fenced writes are checked against `campaign_leases` (PostgreSQL: a cluster). */
  fencing: boolean
}

/** Claims per statement: well under both databases' parameter limits. */
const MAX_CLAIMS_PER_BATCH = 200
/** Sessions deleted per pruning statement; the loop is yielded between statements. */
const PRUNE_CHUNK = 500
/** A campaign's refused fenced writes are logged at most once per this. */
const FENCED_LOG_INTERVAL_MS = 60_000
/** Campaigns remembered for that at most (the oldest are forgotten first). */
const FENCED_LOG_MAX = 10_000

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
  let fencedWrites = 0
  /** When each campaign's refused write was last logged, oldest first. */
  const fencedLoggedAt = new Map<string, number>()

  function refused(write: FencedWrite): void {
    fencedWrites++
    const now = clock.now()
    const last = fencedLoggedAt.get(write.campaignId)
    if (last !== undefined && now - last < FENCED_LOG_INTERVAL_MS) return
    fencedLoggedAt.delete(write.campaignId)
    fencedLoggedAt.set(write.campaignId, now)
    for (const [campaignId, at] of fencedLoggedAt) {
      if (now - at < FENCED_LOG_INTERVAL_MS && fencedLoggedAt.size <= FENCED_LOG_MAX) break
      fencedLoggedAt.delete(campaignId)
    }
    logger.warn(
      {
        campaignId: write.campaignId,
        ...(write.sessionId !== undefined ? { session: sessionTag(write.sessionId) } : {}),
        nodeId: write.fence.nodeId,
        epoch: write.fence.epoch,
      },
      `store: a write under a lease that has moved on was refused and dropped (this node no longer runs the campaign); logged once a minute per campaign`
    )
  }

  const claims = new ClaimBatcher((batch) => claimCampaigns(db, batch, clock.now()), {
    maxBatch: MAX_CLAIMS_PER_BATCH,
    maxInFlight: deps.claimConcurrency,
  })

  const writes = new WriteBehind<StoreChange>({
    options: { ...DEFAULT_WRITE_BEHIND, ...deps.writeBehind },
    clock,
    logger,
    location,
    keyOf: (change) =>
      change.kind === 'session' ? `s:${change.record.sessionId}` : `c:${change.campaignId}`,
    merge: (queued, newer) => {
      if (queued.kind !== 'campaign' || newer.kind !== 'campaign') return newer
      const linkedFrom = newer.linked !== undefined ? newer : queued
      return {
        kind: 'campaign',
        campaignId: newer.campaignId,
        wanted: newer.wanted ?? queued.wanted,
        linked: linkedFrom.linked,
        ...(linkedFrom.linkedFence ? { linkedFence: linkedFrom.linkedFence } : {}),
        proxy: newer.proxy !== undefined ? newer.proxy : queued.proxy,
        at: newer.at,
      }
    },
    async write(changes) {
      const { missing, fenced } = await writeChanges(db, changes, bounds, {
        fencing: deps.fencing,
      })
      for (const campaignId of missing) {
        logger.warn({ campaignId }, 'store: a change to a campaign never claimed is ignored')
      }
      for (const write of fenced) refused(write)
    },
    isPermanent: deps.isPermanent,
    describe: (change) =>
      change.kind === 'session'
        ? { campaignId: change.record.campaignId, sessionId: change.record.sessionId }
        : { campaignId: change.campaignId },
    ...(deps.onBatch ? { onBatch: deps.onBatch } : {}),
  })

  function assertOpen(): void {
    if (closed) throw new StoreClosedError(location)
  }

  const webhooks = createKyselyOutbox(db, clock, assertOpen)

  /** Reads see every change made before them. */
  async function beforeRead(): Promise<void> {
    assertOpen()
    await writes.flush()
  }

  async function pruneNow(): Promise<number> {
    await writes.flush()
    const cutoff = clock.now() - bounds.endedSessionsTtlMs
    let deleted = 0
    for (;;) {
      const count = await deleteExpiredSessions(db, cutoff, PRUNE_CHUNK)
      deleted += count
      if (count < PRUNE_CHUNK) return deleted
      // SQLite's statements block the loop: let other work run between chunks.
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
    webhooks,

    claim(campaignId, owner) {
      if (closed) return Promise.reject(new StoreClosedError(location))
      return claims.claim(campaignId, owner)
    },

    setWanted(campaignId, wanted) {
      assertOpen()
      writes.enqueue({ kind: 'campaign', campaignId, wanted, at: clock.now() })
    },

    setLinked(campaignId, linked, fence) {
      assertOpen()
      writes.enqueue({
        kind: 'campaign',
        campaignId,
        linked,
        ...(fence ? { linkedFence: fence } : {}),
        at: clock.now(),
      })
    },

    setProxy(campaignId, proxy) {
      assertOpen()
      writes.enqueue({ kind: 'campaign', campaignId, proxy, at: clock.now() })
    },

    saveSession(record, fence) {
      assertOpen()
      writes.enqueue({ kind: 'session', record, ...(fence ? { fence } : {}) })
    },

    flush() {
      return writes.flush()
    },

    async getCampaign(campaignId) {
      await beforeRead()
      return findCampaign(db, campaignId)
    },

    async listCampaigns(query = {}) {
      await beforeRead()
      return listCampaigns(db, query)
    },

    async getSession(sessionId) {
      await beforeRead()
      return findSession(db, sessionId)
    },

    async listSessions(campaignId) {
      await beforeRead()
      return listSessions(db, campaignId)
    },

    prune() {
      if (closed) return Promise.reject(new StoreClosedError(location))
      pruning ??= pruneNow().finally(() => (pruning = undefined))
      return pruning
    },

    health() {
      return { kind, location, ...writes.stats(), fenced: fencedWrites }
    },

    close() {
      closing ??= (async () => {
        closed = true
        if (pruneTimer !== undefined) clock.clearTimeout(pruneTimer)
        try {
          await claims.idle()
          await webhooks.idle()
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
