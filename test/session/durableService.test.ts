/**
 * The session service on a real durable store (SQLite, and a throwaway PostgreSQL): what a
 * restart keeps (owners, the last session, linked campaigns), the paced restore, cleanup and
 * unlink, and a store that fails. Each "restart" opens a new store and a new service on the same
 * database, as the process would.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { Caller, StartResult } from '../../src/session/api.ts'
import { openSessionService, type DurableSessionService } from '../../src/session/service.ts'
import { openStore, type CampaignStore } from '../../src/store/index.ts'
import { startPostgres, type PostgresServer } from '../store/postgresServer.ts'
import { createScriptedEngine } from '../support/scriptedEngine.ts'

const alice: Caller = { userId: 'alice', admin: false }
const bob: Caller = { userId: 'bob', admin: false }
const TIMEOUTS = { initMs: 30_000, scanMs: 30_000, authMs: 30_000, destroyMs: 500, killMs: 200 }

interface Backend {
  /** A fresh database; every store opened on it sees the same data. */
  create(): Promise<{ dataDir: string; databaseUrl: string | null }>
}

let postgres: PostgresServer | undefined
const dataDirs: string[] = []
const databases: string[] = []

const backends: Array<[string, Backend]> = [
  [
    'SQLite',
    {
      async create() {
        const dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-durable-'))
        dataDirs.push(dataDir)
        return { dataDir, databaseUrl: null }
      },
    },
  ],
  [
    'PostgreSQL',
    {
      async create() {
        postgres ??= await startPostgres()
        const databaseUrl = await postgres.createDatabase()
        databases.push(databaseUrl)
        const dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-durable-'))
        dataDirs.push(dataDir)
        return { dataDir, databaseUrl }
      },
    },
  ],
]

afterAll(async () => {
  for (const url of databases) await postgres?.dropDatabase(url)
  await postgres?.stop()
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true })
}, 60_000)

describe.each(backends)('the session service on %s', (_name, backend) => {
  let location: { dataDir: string; databaseUrl: string | null }
  const running: Array<{ sessions: DurableSessionService; store: CampaignStore }> = []

  beforeAll(async () => {
    // Starting a throwaway PostgreSQL takes a few seconds, once.
    location = await backend.create()
  }, 60_000)

  afterEach(async () => {
    for (const { sessions, store } of running.splice(0)) {
      await sessions.shutdown()
      await store.close()
    }
  })

  /** A process: a store on the database, a service on it, restore begun. */
  async function start(options: { restoreConcurrency?: number; fresh?: boolean } = {}) {
    if (options.fresh) location = await backend.create()
    const store = await openStore({ ...location, writeBehind: { lagMs: 5 } })
    const scripted = createScriptedEngine()
    const sessions = await openSessionService({
      engine: scripted.engine,
      timeouts: TIMEOUTS,
      maxSessions: 1_000,
      store,
      restoreConcurrency: options.restoreConcurrency ?? 10,
    })
    const process = { sessions, store, scripted }
    running.push(process)
    sessions.beginRestore()
    return process
  }

  /** Shuts the process down gracefully (as SIGTERM does). */
  async function stop(process: { sessions: DurableSessionService; store: CampaignStore }) {
    running.splice(running.indexOf(process), 1)
    await process.sessions.shutdown()
    await process.store.close()
  }

  /** Dies without a shutdown, after what was written behind is written (as after kill -9 + lag). */
  async function die(process: { sessions: DurableSessionService; store: CampaignStore }) {
    running.splice(running.indexOf(process), 1)
    await process.store.close()
    // The engines of a killed process are gone with it; the actors are dropped here.
    await process.sessions.shutdown()
  }

  const request = (sessions: DurableSessionService, campaignId: string, caller: Caller) =>
    sessions.requestSession({ campaignId, caller })

  function expectStarted(result: StartResult): string {
    if (!result.ok) throw new Error(`expected a start, got ${result.error}`)
    return result.view.sessionId!
  }

  it('keeps the owner across a restart: bob is still refused, alice still served', async () => {
    const first = await start({ fresh: true })
    expectStarted(await request(first.sessions, 'spring-sale', alice))
    expect(await request(first.sessions, 'spring-sale', bob)).toEqual({
      ok: false,
      error: 'forbidden',
    })
    await stop(first)

    const second = await start()
    expect(second.sessions.ownerOf('spring-sale')).toBe('alice')
    expect(await request(second.sessions, 'spring-sale', bob)).toEqual({
      ok: false,
      error: 'forbidden',
    })
    expect((await request(second.sessions, 'spring-sale', alice)).ok).toBe(true)
  })

  it('gives 200 concurrent first requests of two users one owner and one session', async () => {
    const { sessions, scripted } = await start({ fresh: true })
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => request(sessions, 'contested', i % 2 ? bob : alice))
    )
    const owner = sessions.ownerOf('contested')
    const started = results.filter((r) => r.ok && r.outcome === 'started')
    const forbidden = results.filter((r) => !r.ok && r.error === 'forbidden')
    expect(started).toHaveLength(1)
    expect(forbidden).toHaveLength(100)
    expect(scripted.sessions).toHaveLength(1)
    expect(['alice', 'bob']).toContain(owner)
  })

  it('shows the last session, its status, reason and history after a restart', async () => {
    const first = await start({ fresh: true })
    const sessionId = expectStarted(await request(first.sessions, 'autumn', alice))
    first.scripted.last().emit({ type: 'qr', qr: 'qr-1' })
    await first.sessions.cleanupSession('autumn')
    await stop(first)

    const second = await start()
    const view = second.sessions.getCampaign('autumn')
    expect(view).toMatchObject({
      campaignId: 'autumn',
      owner: 'alice',
      sessionId,
      status: 'cleaned',
      reason: 'cleanup_requested',
      hasActiveSession: false,
    })
    expect(view.history.map((entry) => entry.status)).toEqual([
      'initializing',
      'awaitingScan',
      'cleaning',
      'cleaned',
    ])
    expect(second.sessions.listCampaigns().campaigns.map((c) => c.campaignId)).toContain('autumn')
  })

  it('remembers a session that failed as failed after a restart, with its reason and detail', async () => {
    const first = await start({ fresh: true })
    expectStarted(await request(first.sessions, 'broken', alice))
    first.scripted.last().emit({ type: 'terminated', kind: 'start_failed', detail: 'no browser' })
    await until(() => first.sessions.getCampaign('broken').history.at(-1)?.status === 'cleaned')
    const before = first.sessions.getCampaign('broken')
    await stop(first)

    const second = await start()
    const after = second.sessions.getCampaign('broken')
    expect(after).toMatchObject({ status: 'failed', reason: 'engine_failed' })
    expect(after.history).toEqual(before.history)
  })

  it('restores a linked campaign after a graceful restart, and after a crash', async () => {
    const first = await start({ fresh: true })
    expectStarted(await request(first.sessions, 'linked', alice))
    first.scripted.last().emit({ type: 'ready' })
    await stop(first)

    const second = await start()
    await until(() => second.scripted.sessions.length === 1)
    expect(second.scripted.last().options.campaignId).toBe('linked')
    second.scripted.last().emit({ type: 'authenticated' })
    second.scripted.last().emit({ type: 'ready' })
    expect(second.sessions.getCampaign('linked').status).toBe('ready')
    await first.store.flush().catch(() => undefined)
    await second.store.flush()
    await die(second)

    // Killed while ready: the session it died under shows as shut down, and comes back.
    const third = await start()
    await until(() => third.scripted.sessions.length === 1)
    const restored = third.sessions.getCampaign('linked')
    expect(restored.hasActiveSession).toBe(true)
    expect(third.sessions.stats().restore).toMatchObject({ total: 1, started: 1 })
  })

  it('does not restore a campaign that was cleaned up, until someone asks for it again', async () => {
    const first = await start({ fresh: true })
    expectStarted(await request(first.sessions, 'paused', alice))
    first.scripted.last().emit({ type: 'ready' })
    await first.sessions.cleanupSession('paused')
    await stop(first)

    const second = await start()
    expect(second.sessions.stats().restore).toMatchObject({ total: 0, done: true })
    expect(second.scripted.sessions).toHaveLength(0)
    expectStarted(await request(second.sessions, 'paused', alice))
    second.scripted.last().emit({ type: 'ready' })
    await stop(second)

    const third = await start()
    await until(() => third.scripted.sessions.length === 1)
    expect(third.sessions.stats().restore).toMatchObject({ total: 1 })
  })

  it('unlinks: the engine logs out as it stops, the login is deleted, nothing is restored, the owner stays', async () => {
    const first = await start({ fresh: true })
    const sessionId = expectStarted(await request(first.sessions, 'gone', alice))
    first.scripted.last().emit({ type: 'ready' })
    const result = await first.sessions.unlinkCampaign('gone')
    expect(result).toEqual({ campaignId: 'gone', sessionId, hadSession: true, loginDeleted: true })
    expect(first.scripted.last().loggedOut).toBe(true)
    expect(first.scripted.forgotten).toEqual(['gone'])
    expect(first.sessions.getCampaign('gone')).toMatchObject({
      status: 'cleaned',
      reason: 'unlinked',
    })
    await stop(first)

    const second = await start()
    expect(second.scripted.sessions).toHaveLength(0)
    expect(second.sessions.ownerOf('gone')).toBe('alice')
    expect(await request(second.sessions, 'gone', bob)).toEqual({ ok: false, error: 'forbidden' })
    const stored = await second.store.getCampaign('gone')
    expect(stored).toMatchObject({ linked: false, wanted: 'stopped' })
  })

  it('marks a campaign unlinked when the phone logs the device out', async () => {
    const first = await start({ fresh: true })
    expectStarted(await request(first.sessions, 'revoked', alice))
    first.scripted.last().emit({ type: 'ready' })
    first.scripted.last().emit({ type: 'terminated', kind: 'logged_out', detail: 'LOGOUT' })
    await until(() => first.sessions.getCampaign('revoked').status === 'failed')
    await first.store.flush()
    expect(await first.store.getCampaign('revoked')).toMatchObject({ linked: false })
    await stop(first)
    const second = await start()
    expect(second.sessions.stats().restore).toMatchObject({ total: 0 })
  })

  // Issue 12: a node that lost the lease ends the session node_lost; the login is still good, so
  // the campaign stays linked (and wanted running) for the node that takes it over.
  it('keeps a campaign linked when its session ends node_lost, and restores it', async () => {
    const first = await start({ fresh: true })
    expectStarted(await request(first.sessions, 'moved', alice))
    first.scripted.last().emit({ type: 'ready' })
    first.scripted.last().emit({ type: 'terminated', kind: 'lease_lost', detail: 'lease lost' })
    await until(() => first.sessions.getCampaign('moved').status === 'failed')
    await first.store.flush()
    expect(await first.store.getCampaign('moved')).toMatchObject({
      linked: true,
      wanted: 'running',
    })
    await stop(first)
    const second = await start()
    expect(second.sessions.stats().restore).toMatchObject({ total: 1 })
  })

  it('restores 200 linked campaigns never more than RESTORE_CONCURRENCY at once, serving a request first', async () => {
    const seed = await openStore({ ...(await freshLocation()), writeBehind: { lagMs: 5 } })
    for (let i = 0; i < 200; i++) {
      await seed.claim(`r${i}`, 'alice')
      seed.setLinked(`r${i}`, true)
    }
    await seed.close()

    const { sessions, scripted } = await start({ restoreConcurrency: 10 })
    const launching = () =>
      sessions.stats().byStatus.initializing + sessions.stats().byStatus.authenticating
    expect(scripted.sessions).toHaveLength(10)
    expect(launching()).toBe(10)
    // A request for a campaign still queued is served at once, ahead of the queue.
    const launched = new Set(scripted.sessions.map((s) => s.options.campaignId))
    const waiting = Array.from({ length: 200 }, (_, i) => `r${i}`).find((id) => !launched.has(id))!
    const asked = await request(sessions, waiting, alice)
    expect(asked.ok && asked.outcome).toBe('started')
    expect(scripted.last().options.campaignId).toBe(waiting)
    expect(launching()).toBe(11)
    let maxLaunching = 0
    for (let next = 0; next < scripted.sessions.length; next++) {
      const session = scripted.sessions[next]!
      session.emit({ type: 'authenticated' })
      session.emit({ type: 'ready' })
      maxLaunching = Math.max(maxLaunching, launching())
    }
    // The asked-for session held a slot: the restore never had more than 10 going.
    expect(maxLaunching).toBeLessThanOrEqual(10)
    expect(scripted.sessions).toHaveLength(200)
    expect(new Set(scripted.sessions.map((s) => s.options.campaignId)).size).toBe(200)
    expect(sessions.stats().restore).toMatchObject({
      total: 200,
      started: 199,
      inFlight: 0,
      done: true,
    })
    expect(sessions.stats().byStatus.ready).toBe(200)
  }, 30_000)

  it('refuses a new campaign with store_unavailable when the store cannot record its owner', async () => {
    const { sessions, store, scripted } = await start({ fresh: true })
    expectStarted(await request(sessions, 'known', alice))
    await store.close()
    expect(await request(sessions, 'new-one', alice)).toEqual({
      ok: false,
      error: 'store_unavailable',
      retryAfterSeconds: 5,
    })
    expect(scripted.sessions).toHaveLength(1)
    // A campaign the process knows is still served.
    expect((await request(sessions, 'known', alice)).ok).toBe(true)
  })

  async function freshLocation() {
    location = await backend.create()
    return location
  }
})

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
