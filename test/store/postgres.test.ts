/**
 * The campaign store on PostgreSQL: the shared contract against a real server (a throwaway
 * cluster, or `TEST_DATABASE_URL`), then what only the PostgreSQL store does.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pg from 'pg'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { createMetrics } from '../../src/metrics.ts'
import type { SessionStats } from '../../src/session/api.ts'
import {
  openStore,
  StoreOpenError,
  type CampaignStore,
  type SessionRecord,
} from '../../src/store/index.ts'
import { startPostgres, type PostgresServer } from './postgresServer.ts'
import { describeStoreContract, type StoreFixture } from './storeContract.ts'

let server: PostgresServer

beforeAll(async () => {
  server = await startPostgres()
}, 60_000)

afterAll(async () => {
  await server?.stop()
}, 60_000)

async function query(url: string, statement: string): Promise<Array<Record<string, unknown>>> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query(statement)).rows
  } finally {
    await client.end()
  }
}

describeStoreContract('PostgreSQL', {
  async create(): Promise<StoreFixture> {
    const databaseUrl = await server.createDatabase()
    return {
      location: { dataDir: mkdtempSync(join(tmpdir(), 'qrvisor-store-')), databaseUrl },
      query: (statement) => query(databaseUrl, statement),
      shared: true,
    }
  },
  async destroy(fixture) {
    rmSync(fixture.location.dataDir, { recursive: true, force: true })
    await server.dropDatabase(fixture.location.databaseUrl!)
  },
})

describe('PostgreSQL campaign store', () => {
  let databaseUrl: string
  const opened: CampaignStore[] = []

  beforeEach(async () => {
    databaseUrl = await server.createDatabase()
  })

  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close().catch(() => undefined)
    await server.dropDatabase(databaseUrl)
  })

  async function open(options: Parameters<typeof openStore>[0]): Promise<CampaignStore> {
    const store = await openStore({ pruneIntervalMs: 0, ...options })
    opened.push(store)
    return store
  }

  async function refusal(url: string): Promise<StoreOpenError> {
    const error = await open({ dataDir: '/nonexistent', databaseUrl: url }).then(
      () => new Error('the store opened'),
      (error: unknown) => error
    )
    expect(error).toBeInstanceOf(StoreOpenError)
    return error as StoreOpenError
  }

  function closedPort(): Promise<number> {
    return new Promise((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number }
        probe.close(() => resolve(port))
      })
    })
  }

  it('names the server, never the password, when it cannot be reached', async () => {
    const port = await closedPort()
    const error = await refusal(`postgres://qrvisor:hunter2@127.0.0.1:${port}/campaigns`)
    expect(error.location).toBe(`postgres://qrvisor@127.0.0.1:${port}/campaigns`)
    expect(error.message).toContain(
      `cannot reach PostgreSQL at postgres://qrvisor@127.0.0.1:${port}/campaigns`
    )
    expect(error.message).toMatch(/ECONNREFUSED/)
    expect(error.message).not.toContain('hunter2')
  })

  it('says which database is missing', async () => {
    const url = new URL(server.adminUrl)
    url.pathname = '/no_such_database'
    url.password = 'hunter2'
    const error = await refusal(url.toString())
    expect(error.message).toContain(`${url.hostname}:${url.port}/no_such_database`)
    expect(error.message).toMatch(/does not exist/)
    expect(error.message).not.toContain('hunter2')
  })

  it('refuses a DATABASE_URL that is not a PostgreSQL URL, without repeating it', async () => {
    const error = await refusal('mysql://root:hunter2@db/campaigns')
    expect(error.message).toMatch(/must be a postgres:\/\/ or postgresql:\/\/ URL/)
    expect(error.message).not.toContain('hunter2')
  })

  it('retries a batch while the database refuses it, and logs each failure', async () => {
    const lines: Array<Record<string, unknown>> = []
    const logger = pino(
      { level: 'warn' },
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(JSON.parse(String(chunk)))
          done()
        },
      })
    )
    const store = await open({
      dataDir: '/nonexistent',
      databaseUrl,
      logger,
      writeBehind: { lagMs: 10, retryMaxMs: 50 },
    })
    await store.claim('spring-sale', 'alice')
    // The table is away (as in a failed-over or restarting server): every write fails.
    await query(databaseUrl, 'alter table sessions rename to sessions_away')
    store.setLinked('spring-sale', true)
    store.saveSession({
      sessionId: 's1',
      campaignId: 'spring-sale',
      status: 'ready',
      reason: null,
      detail: null,
      history: [],
      startedAt: 1,
      updatedAt: 2,
      endedAt: null,
      lastSeenAlive: null,
    })
    await vi.waitFor(() => expect(lines.length).toBeGreaterThanOrEqual(3), { timeout: 10_000 })
    expect(store.health()).toMatchObject({ queued: 2, failing: expect.stringMatching(/sessions/) })
    expect(lines[0]).toMatchObject({ level: 50, msg: expect.stringMatching(/failed; retrying/) })

    await query(databaseUrl, 'alter table sessions_away rename to sessions')
    await vi.waitFor(() => expect(store.health()).toMatchObject({ queued: 0, failing: null }), {
      timeout: 10_000,
    })
    expect(await store.getCampaign('spring-sale')).toMatchObject({
      linked: true,
      lastSession: { sessionId: 's1', status: 'ready' },
    })
  })

  it('survives the server dropping its connections', async () => {
    const store = await open({ dataDir: '/nonexistent', databaseUrl })
    await store.claim('spring-sale', 'alice')
    await query(
      databaseUrl,
      "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'qrvisor'"
    )
    // The pool reports the lost idle connections (without a listener that would end the
    // process) and opens new ones.
    expect(await store.claim('spring-sale', 'bob')).toEqual({ owner: 'alice', created: false })
  })

  describe('fenced writes (issue 12: a node whose lease moved on changes nothing)', () => {
    function session(sessionId: string, status = 'ready'): SessionRecord {
      return {
        sessionId,
        campaignId: 'spring-sale',
        status,
        reason: null,
        detail: null,
        history: [],
        startedAt: sessionId === 's-current' ? 2 : 1,
        updatedAt: 3,
        endedAt: null,
        lastSeenAlive: null,
      }
    }

    function capture() {
      const lines: Array<Record<string, unknown>> = []
      const logger = pino(
        { level: 'warn' },
        new Writable({
          write(chunk, _encoding, done) {
            lines.push(JSON.parse(String(chunk)))
            done()
          },
        })
      )
      return { lines, logger }
    }

    /** The campaign's lease: node-a at epoch 2 (it took over from epoch 1). */
    async function leased(store: CampaignStore, released = 0): Promise<void> {
      await store.claim('spring-sale', 'alice')
      await query(
        databaseUrl,
        `insert into campaign_leases (campaign_id, owner_node, owner_url, epoch, expires_at, released)
         values ('spring-sale', 'node-a', 'http://a', 2, 0, ${released})`
      )
    }

    it('writes a session under the current lease, refuses one under a stale epoch or another node, in one batch', async () => {
      const { lines, logger } = capture()
      const store = await open({ dataDir: '/nonexistent', databaseUrl, logger })
      await leased(store)
      // One batch: the current owner's write and two stale ones.
      store.saveSession(session('s-current'), { nodeId: 'node-a', epoch: 2 })
      store.saveSession(session('s-stale'), { nodeId: 'node-a', epoch: 1 })
      store.saveSession(session('s-other'), { nodeId: 'node-b', epoch: 2 })
      await store.flush()

      expect((await store.listSessions('spring-sale')).map((s) => s.sessionId)).toEqual([
        's-current',
      ])
      expect(store.health().fenced).toBe(2)
      expect(store.health()).toMatchObject({ queued: 0, failing: null, rejected: 0 })
      // Logged once a minute per campaign, without the session id.
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatchObject({
        level: 40,
        campaignId: 'spring-sale',
        msg: expect.stringMatching(/lease that has moved on was refused/),
      })
      expect(JSON.stringify(lines)).not.toContain('s-stale')

      // A refused write is not retried: the stale record stays away.
      store.saveSession(session('s-stale', 'failed'), { nodeId: 'node-a', epoch: 1 })
      await store.flush()
      expect(await store.getSession('s-stale')).toBeUndefined()
      expect(store.health().fenced).toBe(3)
      expect(lines).toHaveLength(1)

      const metrics = createMetrics({
        sessions: {
          stats: (): SessionStats => ({
            accepting: true,
            campaigns: 0,
            live: 0,
            maxSessions: 1,
            byStatus: {} as SessionStats['byStatus'],
            restore: null,
            probes: { alive: 0, missed: 0 },
          }),
        },
        store,
        processMetrics: false,
      })
      expect(await metrics.render()).toMatch(/^qrvisor_store_fenced_writes_total 3$/m)
    })

    it('holds after a release (the engine stopped), and refuses any fenced write without a lease row', async () => {
      const store = await open({ dataDir: '/nonexistent', databaseUrl })
      await store.claim('spring-sale', 'alice')
      store.saveSession(session('s-unleased'), { nodeId: 'node-a', epoch: 1 })
      store.setLinked('spring-sale', true, { nodeId: 'node-a', epoch: 1 })
      await store.flush()
      expect(await store.getSession('s-unleased')).toBeUndefined()
      expect((await store.getCampaign('spring-sale'))?.linked).toBe(false)
      expect(store.health().fenced).toBe(2)

      await query(
        databaseUrl,
        `insert into campaign_leases (campaign_id, owner_node, owner_url, epoch, expires_at, released)
         values ('spring-sale', 'node-a', 'http://a', 1, 0, 1)`
      )
      // The last writes of a stopped engine land after its lease was released.
      store.saveSession(session('s-unleased', 'failed'), { nodeId: 'node-a', epoch: 1 })
      await store.flush()
      expect((await store.getSession('s-unleased'))?.status).toBe('failed')
      // Unfenced writes are not checked (a single node, or a change any node may make).
      store.saveSession(session('s-plain'))
      await store.flush()
      expect(await store.getSession('s-plain')).toBeDefined()
    })

    it('fences setLinked the same way, and keeps the unfenced fields of the same change', async () => {
      const store = await open({ dataDir: '/nonexistent', databaseUrl })
      await leased(store)
      store.setWanted('spring-sale', 'stopped')
      store.setLinked('spring-sale', true, { nodeId: 'node-a', epoch: 1 })
      await store.flush()
      expect(await store.getCampaign('spring-sale')).toMatchObject({
        wanted: 'stopped',
        linked: false,
      })
      expect(store.health().fenced).toBe(1)

      store.setLinked('spring-sale', true, { nodeId: 'node-a', epoch: 2 })
      await store.flush()
      expect((await store.getCampaign('spring-sale'))?.linked).toBe(true)
      // A later unfenced setLinked replaces the fenced one queued before it.
      store.setLinked('spring-sale', false, { nodeId: 'node-b', epoch: 9 })
      store.setLinked('spring-sale', false)
      await store.flush()
      expect((await store.getCampaign('spring-sale'))?.linked).toBe(false)
      expect(store.health().fenced).toBe(1)
    })

    it('a takeover that commits while a batch checks its fence is seen: the stale write is refused', async () => {
      const store = await open({ dataDir: '/nonexistent', databaseUrl })
      await leased(store)
      const other = new pg.Client({ connectionString: databaseUrl })
      await other.connect()
      try {
        // Another node's takeover, held open: the batch's fence check waits for its outcome.
        await other.query('begin')
        await other.query(
          "update campaign_leases set owner_node = 'node-b', epoch = 3 where campaign_id = 'spring-sale'"
        )
        store.saveSession(session('s-current'), { nodeId: 'node-a', epoch: 2 })
        const flushed = store.flush()
        await new Promise((resolve) => setTimeout(resolve, 100))
        await other.query('commit')
        await flushed
      } finally {
        await other.end()
      }
      // It re-read the row the takeover committed: node-a's write is refused.
      expect(await store.getSession('s-current')).toBeUndefined()
      expect(store.health().fenced).toBe(1)
    })
  })
})
