/**
 * The leased engine on a real PostgreSQL: an engine launches only under its campaign's lease,
 * never while another node holds it, waits out the takeover delay of an expired lease, is killed
 * (forced phase only) and ends `lease_lost` when the lease is lost, and releases the lease once
 * it is gone (as a handover when the campaign should keep running).
 */
import type pg from 'pg'
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { CampaignLeases, monotonicClock } from '../../src/cluster/campaignLeases.ts'
import { leasedEngine, type LeasedEngine } from '../../src/cluster/leasedEngine.ts'
import { type LeaseTable } from '../../src/cluster/leaseTable.ts'
import type { EngineEvent, EngineSession } from '../../src/engines/engine.ts'
import { silentLogger } from '../../src/logger.ts'
import { useLeaseDatabase } from './support/leaseDatabase.ts'
import { createScriptedEngine } from '../support/scriptedEngine.ts'

let table: LeaseTable
let pool: pg.Pool

const nodeA = { nodeId: 'node-a', url: 'http://127.0.0.1:1' }
const nodeB = { nodeId: 'node-b', url: 'http://127.0.0.1:2' }
/** Real time: leases expire by PostgreSQL's clock. The kill bound and margin are short. */
const TIMING = { ttlMs: 3_000, killBoundMs: 100, marginMs: 200 }
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const db = useLeaseDatabase()
beforeAll(() => {
  ;({ table, pool } = db)
})

const open: CampaignLeases[] = []
beforeEach(async () => {
  await pool.query('delete from campaign_leases')
})
afterEach(() => {
  for (const leases of open.splice(0)) leases.stop()
})

function node(address = nodeA, handsOver = () => false, beforeRelease?: () => Promise<void>) {
  const lost: Array<{ campaignIds: string[]; why: string }> = []
  const fence: { engine?: LeasedEngine } = {}
  const leases = new CampaignLeases({
    ...TIMING,
    node: address,
    table,
    clock: monotonicClock,
    onLost: (campaignIds, why) => {
      lost.push({ campaignIds, why })
      fence.engine?.fence(campaignIds, why)
    },
  })
  open.push(leases)
  const inner = createScriptedEngine()
  const engine = leasedEngine(inner.engine, {
    leases,
    clock: monotonicClock,
    logger: silentLogger,
    handsOver,
    ...(beforeRelease ? { beforeRelease } : {}),
  })
  fence.engine = engine
  return { leases, inner, engine, lost }
}

function startSession(engine: LeasedEngine, campaignId: string) {
  const events: EngineEvent[] = []
  const session: EngineSession = engine.createSession({
    campaignId,
    sessionId: `${campaignId}-${Math.random()}`,
    onEvent: (event) => events.push(event),
  })
  session.start()
  return { session, events }
}

async function until(condition: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting')
    await sleep(10)
  }
}

describe('leasedEngine', () => {
  it('launches the engine once the lease is taken, relays its events, and releases the lease after the stop', async () => {
    const a = node()
    const { session, events } = startSession(a.engine, 'c1')
    await until(() => a.inner.sessions.length === 1)
    expect((await table.holderOf('c1'))?.nodeId).toBe('node-a')
    a.inner.last().emit({ type: 'qr', qr: 'QR-1' })
    expect(events).toEqual([{ type: 'qr', qr: 'QR-1' }])
    await session.stop()
    expect(a.engine.runningCampaigns()).toEqual([])
    // Released in the next turn, once the session's last record was written.
    await until(async () => (await table.holderOf('c1'))?.released === true)
  })

  it('never launches while another node holds the lease: the start fails naming that node', async () => {
    const a = node()
    const b = node(nodeB)
    startSession(a.engine, 'c1')
    await until(() => a.inner.sessions.length === 1)
    const { events } = startSession(b.engine, 'c1')
    await until(() => events.length > 0)
    expect(b.inner.sessions).toHaveLength(0)
    expect(events).toEqual([
      {
        type: 'terminated',
        kind: 'start_failed',
        detail: "the campaign's session runs on node node-a",
      },
    ])
  })

  it('after taking over an expired lease, waits killBound + margin before launching', async () => {
    // node-a took the lease and died (no renewal): it expires by the database's clock.
    await table.acquire('c1', nodeA, 150)
    await sleep(200)
    const b = node(nodeB)
    const startedAt = performance.now()
    startSession(b.engine, 'c1')
    await until(() => b.inner.sessions.length === 1)
    const waited = performance.now() - startedAt
    expect(waited).toBeGreaterThanOrEqual(TIMING.killBoundMs + TIMING.marginMs - 5)
    // node-a's browser left its profile locked to its host: node-b's engine clears it.
    expect(b.inner.last().options.takeover).toBe(true)
  })

  it('starts at once after a released lease', async () => {
    const a = node()
    const first = startSession(a.engine, 'c1')
    await until(() => a.inner.sessions.length === 1)
    await first.session.stop()
    await until(async () => (await table.holderOf('c1'))?.released === true)
    const b = node(nodeB)
    const startedAt = performance.now()
    startSession(b.engine, 'c1')
    await until(() => b.inner.sessions.length === 1)
    expect(performance.now() - startedAt).toBeLessThan(TIMING.killBoundMs + TIMING.marginMs)
    expect(a.inner.last().options.takeover).toBeUndefined()
    expect(b.inner.last().options.takeover).toBe(true)
  })

  it('a lost lease kills the engine with the forced phase only, drops its later events, and ends it lease_lost', async () => {
    const a = node()
    const { events } = startSession(a.engine, 'c1')
    await until(() => a.inner.sessions.length === 1)
    // Another node took it over (the lease was let expire and re-acquired).
    await pool.query(`update campaign_leases set expires_at = 0 where campaign_id = 'c1'`)
    await table.acquire('c1', nodeB, 10_000)
    await a.leases.keeper.renewNow()
    expect(a.lost).toEqual([{ campaignIds: ['c1'], why: 'lost' }])
    const engineSession = a.inner.last()
    expect(engineSession.forced).toBe(true)
    engineSession.emitAfterStop({ type: 'ready' })
    await until(() => events.length > 0)
    expect(events).toEqual([
      {
        type: 'terminated',
        kind: 'lease_lost',
        detail: 'this node lost the lease to another node and killed the engine',
      },
    ])
    // The lease is node-b's: node-a's stop must not release it.
    expect((await table.holderOf('c1'))?.nodeId).toBe('node-b')
  })

  it('releases as a handover when the campaign should keep running', async () => {
    const a = node(nodeA, () => true)
    const { session } = startSession(a.engine, 'c1')
    await until(() => a.inner.sessions.length === 1)
    await session.stop()
    await until(async () => (await table.holderOf('c1'))?.released === true)
    const { rows } = await pool.query(
      `select handover from campaign_leases where campaign_id = 'c1'`
    )
    expect(rows[0].handover).toBe(1)
  })

  it('releases only once the store wrote what the session queued (its last record goes in under this lease)', async () => {
    let written: () => void = () => undefined
    const flushed = new Promise<void>((resolve) => (written = resolve))
    const a = node(
      nodeA,
      () => false,
      () => flushed
    )
    const { session } = startSession(a.engine, 'c1')
    await until(() => a.inner.sessions.length === 1)
    await session.stop()
    await sleep(100)
    expect((await table.holderOf('c1'))?.released).toBe(false)
    written()
    await until(async () => (await table.holderOf('c1'))?.released === true)
  })

  it('releaseIdle gives back a lease held with no engine, on the second look', async () => {
    const a = node()
    expect((await a.leases.ensure('c9')).ok).toBe(true)
    a.engine.releaseIdle()
    expect(a.leases.isProvable('c9')).toBe(true)
    a.engine.releaseIdle()
    await until(async () => (await table.holderOf('c9'))?.released === true)
  })
})
