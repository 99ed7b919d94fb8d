/**
 * The campaign store's contract: one suite, run against every implementation (sqlite.test.ts,
 * postgres.test.ts). Each test gets an empty database of its own.
 */
import { spawn } from 'node:child_process'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { Clock } from '../../src/clock.ts'
import {
  openStore,
  StoreClosedError,
  StoreOpenError,
  type CampaignStore,
  type SessionRecord,
  type StoreOptions,
} from '../../src/store/index.ts'

export interface StoreFixture {
  /** What `openStore` needs to open this fixture's database. */
  location: { dataDir: string; databaseUrl: string | null }
  /** Runs SQL on the database directly (for SQLite, only while no store has it open). */
  query(statement: string): Promise<Array<Record<string, unknown>>>
  /** More than one store may have the database open at once (PostgreSQL). */
  shared: boolean
}

export interface StoreFixtureFactory {
  create(): Promise<StoreFixture>
  destroy(fixture: StoreFixture): Promise<void>
}

/** A clock whose `now` the test sets; its timers are real. */
function manualClock(start: number): Clock & { set(now: number): void } {
  let now = start
  return {
    now: () => now,
    set: (value) => (now = value),
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  }
}

/** The system clock, counting the timers it has pending. */
function trackingClock(): Clock & { pending(): number } {
  const pending = new Set<ReturnType<typeof setTimeout>>()
  return {
    now: () => Date.now(),
    pending: () => pending.size,
    setTimeout(fn, ms) {
      const handle = setTimeout(() => {
        pending.delete(handle)
        fn()
      }, ms)
      pending.add(handle)
      return handle
    },
    clearTimeout(handle) {
      pending.delete(handle as ReturnType<typeof setTimeout>)
      clearTimeout(handle as ReturnType<typeof setTimeout>)
    },
  }
}

function capturingLogger() {
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = []
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk, _encoding, done) {
        lines.push(JSON.parse(String(chunk)))
        done()
      },
    })
  )
  return { logger, lines }
}

function session(overrides: Partial<SessionRecord> & { sessionId: string }): SessionRecord {
  return {
    campaignId: 'spring-sale',
    status: 'initializing',
    reason: null,
    detail: null,
    history: [{ status: 'initializing', at: 1_000 }],
    startedAt: 1_000,
    updatedAt: 1_000,
    endedAt: null,
    lastSeenAlive: null,
    node: null,
    ...overrides,
  }
}

export function describeStoreContract(name: string, factory: StoreFixtureFactory): void {
  describe(`${name} campaign store`, () => {
    let fixture: StoreFixture
    const opened: CampaignStore[] = []

    beforeEach(async () => {
      fixture = await factory.create()
    })

    afterEach(async () => {
      for (const store of opened.splice(0)) await store.close().catch(() => undefined)
      await factory.destroy(fixture)
    })

    async function open(options: StoreOptions = {}): Promise<CampaignStore> {
      const store = await openStore({ ...fixture.location, pruneIntervalMs: 0, ...options })
      opened.push(store)
      return store
    }

    async function reopen(store: CampaignStore, options: StoreOptions = {}) {
      await store.close()
      return open(options)
    }

    describe('migrations', () => {
      it('creates the schema on a new database, and re-opening changes nothing', async () => {
        const store = await open()
        await store.claim('spring-sale', 'alice')
        await store.close()
        const before = await fixture.query('select name, timestamp from qrvisor_migration')
        expect(before.map((row) => row.name)).toEqual([
          '0001_campaigns_and_sessions',
          '0002_webhooks',
          '0003_cluster',
          '0004_campaign_proxy',
          '0005_session_last_seen_alive',
          '0006_cluster_failover',
          '0007_session_node',
          '0008_node_instance',
        ])

        const again = await open()
        expect((await again.getCampaign('spring-sale'))?.owner).toBe('alice')
        await again.close()
        expect(await fixture.query('select name, timestamp from qrvisor_migration')).toEqual(before)
      })

      it('refuses a database migrated by a newer version, says so, and changes nothing', async () => {
        const store = await open()
        await store.claim('spring-sale', 'alice')
        await store.close()
        await fixture.query(
          "insert into qrvisor_migration (name, timestamp) values ('9999_from_a_newer_version', '2030-01-01T00:00:00.000Z')"
        )
        const before = await fixture.query('select * from campaigns')

        const refused = await open().then(
          () => undefined,
          (error: unknown) => error
        )
        expect(refused).toBeInstanceOf(StoreOpenError)
        const message = (refused as Error).message
        expect(message).toMatch(/newer version of qrvisor/)
        expect(message).toContain('9999_from_a_newer_version')
        expect(message).toContain((refused as StoreOpenError).location)
        expect(message).toMatch(/nothing was changed/)
        expect(await fixture.query('select * from campaigns')).toEqual(before)
        expect(await fixture.query('select name from qrvisor_migration order by name')).toEqual([
          { name: '0001_campaigns_and_sessions' },
          { name: '0002_webhooks' },
          { name: '0003_cluster' },
          { name: '0004_campaign_proxy' },
          { name: '0005_session_last_seen_alive' },
          { name: '0006_cluster_failover' },
          { name: '0007_session_node' },
          { name: '0008_node_instance' },
          { name: '9999_from_a_newer_version' },
        ])
      })

      it('brings a database of the first version (0001 only) up to date, keeping its data', async () => {
        const store = await open()
        await store.claim('spring-sale', 'alice')
        await store.close()
        // As the first version left it: without the webhook and cluster tables.
        await fixture.query('drop table webhook_deliveries')
        await fixture.query('drop table webhook_endpoints')
        await fixture.query('drop table campaign_leases')
        await fixture.query('drop table cluster_nodes')
        await fixture.query('alter table campaigns drop column proxy')
        await fixture.query(
          "delete from qrvisor_migration where name in ('0002_webhooks', '0003_cluster', '0004_campaign_proxy', '0005_session_last_seen_alive', '0006_cluster_failover', '0007_session_node', '0008_node_instance')"
        )
        await fixture.query('alter table sessions drop column last_seen_alive')
        await fixture.query('alter table sessions drop column node')

        const upgraded = await open()
        expect((await upgraded.getCampaign('spring-sale'))?.owner).toBe('alice')
        expect(await upgraded.webhooks.depth()).toEqual({
          pending: 0,
          failed: 0,
          oldestPendingAt: null,
        })
        await upgraded.close()
        const names = await fixture.query('select name from qrvisor_migration order by name')
        expect(names).toEqual([
          { name: '0001_campaigns_and_sessions' },
          { name: '0002_webhooks' },
          { name: '0003_cluster' },
          { name: '0004_campaign_proxy' },
          { name: '0005_session_last_seen_alive' },
          { name: '0006_cluster_failover' },
          { name: '0007_session_node' },
          { name: '0008_node_instance' },
        ])
      })
    })

    describe('claim', () => {
      it('makes the first claimant the owner; later claims get that owner', async () => {
        const store = await open()
        expect(await store.claim('spring-sale', 'alice')).toEqual({ owner: 'alice', created: true })
        expect(await store.claim('spring-sale', 'bob')).toEqual({ owner: 'alice', created: false })
        expect(await store.claim('spring-sale', 'alice')).toEqual({
          owner: 'alice',
          created: false,
        })
        const campaign = await store.getCampaign('spring-sale')
        expect(campaign).toMatchObject({
          owner: 'alice',
          wanted: 'running',
          linked: false,
          lastSession: null,
        })
      })

      it('is durable once it resolves: the owner survives a kill -9 right after', async () => {
        const child = spawn(
          process.execPath,
          ['--import', 'tsx', 'test/store/fixtures/claimThenWait.ts'],
          {
            env: {
              ...process.env,
              STORE_DATA_DIR: fixture.location.dataDir,
              STORE_DATABASE_URL: fixture.location.databaseUrl ?? '',
              CAMPAIGN: 'spring-sale',
              OWNER: 'alice',
            },
            stdio: ['ignore', 'pipe', 'pipe'],
          }
        )
        let stderr = ''
        child.stderr.on('data', (chunk) => (stderr += String(chunk)))
        const exited = new Promise((resolve) => child.once('exit', resolve))
        const answer = await new Promise<string>((resolve, reject) => {
          child.stdout.once('data', (chunk) => resolve(String(chunk)))
          child.once('exit', () => reject(new Error(`the child exited first: ${stderr}`)))
        })
        expect(JSON.parse(answer)).toEqual({ owner: 'alice', created: true })
        child.kill('SIGKILL')
        await exited

        const store = await open()
        const campaign = await store.getCampaign('spring-sale')
        expect(campaign?.owner).toBe('alice')
        // The session was only queued (written behind, a minute later): the kill lost it, so
        // what survived is the claim's own commit.
        expect(campaign?.lastSession).toBeNull()
        expect(await store.claim('spring-sale', 'bob')).toEqual({ owner: 'alice', created: false })
      })

      it('has exactly one winner among concurrent claims of one campaign', async () => {
        const stores = fixture.shared ? [await open(), await open()] : [await open()]
        const claimants = ['alice', 'bob', 'carol', 'dave']
        const attempts = []
        for (let c = 0; c < 40; c++) {
          for (let k = 0; k < claimants.length; k++) {
            // Each campaign's claimants in another order, spread over the stores.
            const owner = claimants[(c + k) % claimants.length]!
            const store = stores[(c + k) % stores.length]!
            attempts.push({ campaignId: `c${c}`, owner, result: store.claim(`c${c}`, owner) })
          }
        }
        const settled = await Promise.all(
          attempts.map(async (attempt) => ({ ...attempt, result: await attempt.result }))
        )
        for (let c = 0; c < 40; c++) {
          const results = settled.filter((attempt) => attempt.campaignId === `c${c}`)
          const winners = results.filter((attempt) => attempt.result.created)
          expect(winners).toHaveLength(1)
          const owner = winners[0]!.owner
          for (const attempt of results) expect(attempt.result.owner).toBe(owner)
          expect((await stores[0]!.getCampaign(`c${c}`))?.owner).toBe(owner)
        }
      })

      it('is refused after close', async () => {
        const store = await open()
        await store.close()
        await expect(store.claim('spring-sale', 'alice')).rejects.toBeInstanceOf(StoreClosedError)
        expect(() => store.setWanted('spring-sale', 'stopped')).toThrow(StoreClosedError)
      })
    })

    describe('write-behind', () => {
      it('writes queued changes by itself, in batches, without a flush', async () => {
        const batches: number[] = []
        const store = await open({
          writeBehind: { lagMs: 20 },
          onBatch: (report) => batches.push(report.rows),
        })
        await store.claim('spring-sale', 'alice')
        store.saveSession(session({ sessionId: 's1' }))
        store.setLinked('spring-sale', true)
        expect(store.health().queued).toBe(2)
        await vi.waitFor(() => expect(batches).toEqual([2]), { timeout: 5_000 })
        expect(store.health()).toMatchObject({ queued: 0, dropped: 0, rejected: 0, failing: null })
      })

      it('keeps when a session was last seen alive', async () => {
        const store = await open()
        await store.claim('spring-sale', 'alice')
        store.saveSession(session({ sessionId: 's1', status: 'ready', lastSeenAlive: 5_000 }))
        expect((await store.getSession('s1'))?.lastSeenAlive).toBe(5_000)
        store.saveSession(session({ sessionId: 's1', status: 'ready', lastSeenAlive: 9_000 }))
        const again = await reopen(store)
        expect((await again.getCampaign('spring-sale'))?.lastSession?.lastSeenAlive).toBe(9_000)
      })

      it('keeps the cluster node that ran a session', async () => {
        const store = await open()
        await store.claim('spring-sale', 'alice')
        store.saveSession(session({ sessionId: 's1', status: 'ready', node: 'node-a' }))
        expect((await store.getSession('s1'))?.node).toBe('node-a')
        const again = await reopen(store)
        expect((await again.getCampaign('spring-sale'))?.lastSession?.node).toBe('node-a')
      })

      it('writes everything queued at close', async () => {
        const store = await open({ writeBehind: { lagMs: 600_000 } })
        await store.claim('spring-sale', 'alice')
        store.saveSession(
          session({
            sessionId: 's1',
            status: 'ready',
            history: [
              { status: 'initializing', at: 1_000 },
              { status: 'ready', at: 2_000, detail: 'scanned' },
            ],
            updatedAt: 2_000,
          })
        )
        store.setLinked('spring-sale', true)
        store.setWanted('spring-sale', 'stopped')

        const again = await reopen(store)
        expect(await again.getCampaign('spring-sale')).toEqual({
          campaignId: 'spring-sale',
          owner: 'alice',
          wanted: 'stopped',
          linked: true,
          proxy: null,
          createdAt: expect.any(Number),
          updatedAt: expect.any(Number),
          lastSession: session({
            sessionId: 's1',
            status: 'ready',
            history: [
              { status: 'initializing', at: 1_000 },
              { status: 'ready', at: 2_000, detail: 'scanned' },
            ],
            updatedAt: 2_000,
          }),
        })
      })

      it("keeps each campaign's proxy as written, the newest change winning; null clears it (issue 14)", async () => {
        const store = await open({ writeBehind: { lagMs: 600_000 } })
        for (const id of ['a', 'b', 'c']) await store.claim(id, 'alice')
        store.setProxy('a', '{"server":"http://one.example:80"}')
        store.setLinked('a', true)
        store.setProxy('a', '{"server":"http://two.example:80"}')
        store.setProxy('b', '{"server":"http://two.example:80"}')
        store.setProxy('c', '{"server":"http://three.example:80"}')
        store.setProxy('c', null)
        const again = await reopen(store)
        expect(await again.getCampaign('a')).toMatchObject({
          linked: true,
          proxy: '{"server":"http://two.example:80"}',
        })
        expect((await again.getCampaign('b'))?.proxy).toBe('{"server":"http://two.example:80"}')
        expect((await again.getCampaign('c'))?.proxy).toBeNull()
        expect((await again.listCampaigns()).map((campaign) => campaign.proxy)).toEqual([
          '{"server":"http://two.example:80"}',
          '{"server":"http://two.example:80"}',
          null,
        ])
      })

      it('keeps the newest state of a record changed many times before a write', async () => {
        const store = await open({ writeBehind: { lagMs: 600_000 } })
        await store.claim('spring-sale', 'alice')
        for (const status of ['initializing', 'awaitingScan', 'authenticating', 'ready']) {
          store.saveSession(session({ sessionId: 's1', status }))
        }
        store.setLinked('spring-sale', true)
        store.setWanted('spring-sale', 'stopped')
        store.setWanted('spring-sale', 'running')
        expect(store.health().queued).toBe(2)
        const campaign = await store.getCampaign('spring-sale')
        expect(campaign).toMatchObject({ wanted: 'running', linked: true })
        expect(campaign?.lastSession?.status).toBe('ready')
      })

      it('shows queued writes to reads (they flush first)', async () => {
        const store = await open({ writeBehind: { lagMs: 600_000 } })
        await store.claim('spring-sale', 'alice')
        store.saveSession(session({ sessionId: 's1' }))
        expect((await store.getSession('s1'))?.status).toBe('initializing')
        expect(store.health().queued).toBe(0)
      })

      it('logs and counts a record the database refuses, and writes the rest of its batch', async () => {
        const { logger, lines } = capturingLogger()
        const store = await open({ logger, writeBehind: { lagMs: 600_000 } })
        await store.claim('spring-sale', 'alice')
        store.saveSession(session({ sessionId: 's1' }))
        // Never claimed: its session breaks the foreign key.
        store.saveSession(session({ sessionId: 'orphan', campaignId: 'nobody-claimed-it' }))
        store.saveSession(session({ sessionId: 's2', startedAt: 2_000 }))
        store.setWanted('never-claimed', 'stopped')
        await store.flush()

        expect(store.health()).toMatchObject({ queued: 0, rejected: 1, failing: null })
        expect((await store.listSessions('spring-sale')).map((s) => s.sessionId)).toEqual([
          's2',
          's1',
        ])
        expect(await store.getSession('orphan')).toBeUndefined()
        expect(lines).toContainEqual(
          expect.objectContaining({
            level: 50,
            sessionId: 'orphan',
            msg: expect.stringMatching(/refused a record/),
          })
        )
        expect(lines).toContainEqual(
          expect.objectContaining({ level: 40, campaignId: 'never-claimed' })
        )
      })
    })

    describe('close', () => {
      it('leaves no timer behind, and a second close does nothing', async () => {
        const clock = trackingClock()
        const store = await open({ clock, pruneIntervalMs: 60_000, writeBehind: { lagMs: 60_000 } })
        await store.claim('spring-sale', 'alice')
        store.saveSession(session({ sessionId: 's1' }))
        expect(clock.pending()).toBe(2) // the next pruning, the queued write
        await store.close()
        await store.close()
        expect(clock.pending()).toBe(0)
      })
    })

    describe('campaigns and sessions', () => {
      it('gives the most recently started session as the last one', async () => {
        const store = await open()
        await store.claim('spring-sale', 'alice')
        store.saveSession(session({ sessionId: 'b', startedAt: 2_000 }))
        store.saveSession(session({ sessionId: 'a', startedAt: 1_000, endedAt: 3_000 }))
        expect((await store.getCampaign('spring-sale'))?.lastSession?.sessionId).toBe('b')
        expect(await store.getCampaign('unknown')).toBeUndefined()
      })

      it('lists campaigns by owner, wanted state and linked, a page at a time', async () => {
        const store = await open()
        for (let i = 0; i < 5; i++) await store.claim(`c${i}`, i % 2 === 0 ? 'alice' : 'bob')
        store.setLinked('c0', true)
        store.setLinked('c2', true)
        store.setWanted('c2', 'stopped')

        const byAlice = await store.listCampaigns({ owner: 'alice' })
        expect(byAlice.map((c) => c.campaignId)).toEqual(['c0', 'c2', 'c4'])
        const toRestore = await store.listCampaigns({ wanted: 'running', linked: true })
        expect(toRestore.map((c) => c.campaignId)).toEqual(['c0'])
        const first = await store.listCampaigns({ limit: 2 })
        const second = await store.listCampaigns({ limit: 2, after: first.at(-1)!.campaignId })
        expect([...first, ...second].map((c) => c.campaignId)).toEqual(['c0', 'c1', 'c2', 'c3'])
      })
    })

    describe('bounds', () => {
      it('keeps the newest history entries of a session', async () => {
        const store = await open({ bounds: { historyMaxEntries: 3 } })
        await store.claim('spring-sale', 'alice')
        const history = Array.from({ length: 10 }, (_, i) => ({ status: 'awaitingScan', at: i }))
        store.saveSession(session({ sessionId: 's1', history }))
        expect((await store.getSession('s1'))?.history).toEqual(history.slice(-3))
      })

      it('keeps at most endedSessionsMax ended sessions per campaign, never the live one', async () => {
        const store = await open({ bounds: { endedSessionsMax: 2 } })
        await store.claim('spring-sale', 'alice')
        await store.claim('other', 'alice')
        store.saveSession(session({ sessionId: 'other-1', campaignId: 'other', endedAt: 500 }))
        for (let i = 1; i <= 5; i++) {
          store.saveSession(
            session({ sessionId: `s${i}`, startedAt: i * 1_000, endedAt: i * 1_000 + 500 })
          )
        }
        store.saveSession(session({ sessionId: 'live', startedAt: 9_000 }))
        await store.flush()
        expect((await store.listSessions('spring-sale')).map((s) => s.sessionId)).toEqual([
          'live',
          's5',
          's4',
        ])
        expect((await store.listSessions('other')).map((s) => s.sessionId)).toEqual(['other-1'])
      })

      it('prunes by itself every pruneIntervalMs', async () => {
        const { logger, lines } = capturingLogger()
        const store = await open({ logger, pruneIntervalMs: 20, bounds: { endedSessionsTtlMs: 1 } })
        await store.claim('spring-sale', 'alice')
        store.saveSession(session({ sessionId: 'old', startedAt: 1, endedAt: 2 }))
        store.saveSession(session({ sessionId: 'last', startedAt: 3, endedAt: 4 }))
        await vi.waitFor(
          () => expect(lines).toContainEqual(expect.objectContaining({ deleted: 1 })),
          { timeout: 5_000 }
        )
        expect((await store.listSessions('spring-sale')).map((s) => s.sessionId)).toEqual(['last'])
      })

      it('prunes ended sessions past their age, but keeps the last one and the owner', async () => {
        const day = 24 * 60 * 60_000
        const clock = manualClock(100 * day)
        const store = await open({ clock, bounds: { endedSessionsTtlMs: day } })
        await store.claim('spring-sale', 'alice')
        await store.claim('quiet', 'bob')
        // spring-sale: two old ended sessions, one recent ended, one live.
        store.saveSession(session({ sessionId: 'old-1', startedAt: 1, endedAt: 2 }))
        store.saveSession(session({ sessionId: 'old-2', startedAt: 3, endedAt: 4 }))
        store.saveSession(session({ sessionId: 'recent', startedAt: 5, endedAt: 100 * day - 1 }))
        store.saveSession(session({ sessionId: 'live', startedAt: 100 * day }))
        // quiet: only old ended sessions; the most recent of them stays.
        store.saveSession(
          session({ sessionId: 'q-1', campaignId: 'quiet', startedAt: 1, endedAt: 2 })
        )
        store.saveSession(
          session({ sessionId: 'q-2', campaignId: 'quiet', startedAt: 3, endedAt: 4 })
        )

        expect(await store.prune()).toBe(3)
        expect((await store.listSessions('spring-sale')).map((s) => s.sessionId)).toEqual([
          'live',
          'recent',
        ])
        const quiet = await store.getCampaign('quiet')
        expect(quiet?.owner).toBe('bob')
        expect(quiet?.lastSession?.sessionId).toBe('q-2')

        clock.set(1_000 * day)
        store.saveSession(session({ sessionId: 'live', startedAt: 100 * day, endedAt: 999 * day }))
        expect(await store.prune()).toBe(1)
        expect((await store.listSessions('spring-sale')).map((s) => s.sessionId)).toEqual(['live'])
        // The ownership outlives every session record.
        expect(await store.claim('spring-sale', 'bob')).toEqual({ owner: 'alice', created: false })
        expect(await store.claim('quiet', 'alice')).toEqual({ owner: 'bob', created: false })
      })
    })
  })
}
