/**
 * The lease table on a real PostgreSQL (a throwaway cluster, or TEST_DATABASE_URL): one winner
 * per campaign, epochs that only grow, expiry by the database's clock, renewals that fail for a
 * lease lost, releases, and the nodes' heartbeats.
 */
import type pg from 'pg'
import { beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { MAX_ORPHANS, type LeaseTable } from '../../src/cluster/leaseTable.ts'
import { useLeaseDatabase } from './support/leaseDatabase.ts'

let table: LeaseTable
let pool: pg.Pool

const a = { nodeId: 'node-a', url: 'http://10.0.0.1:3000' }
const b = { nodeId: 'node-b', url: 'http://10.0.0.2:3000' }
/** A heartbeat's staleness bound where nothing here goes stale. */
const TTL = 60_000

const db = useLeaseDatabase()
beforeAll(() => {
  ;({ table, pool } = db)
})

beforeEach(async () => {
  await pool.query('delete from campaign_leases')
  await pool.query('delete from cluster_nodes')
  await pool.query('delete from campaigns')
})

/** A campaign row as the store writes it (`updatedAt`: epoch ms, orders unleased orphans). */
async function campaign(
  campaignId: string,
  {
    wanted = 'running',
    linked = true,
    updatedAt = 1,
  }: { wanted?: string; linked?: boolean; updatedAt?: number } = {}
) {
  await pool.query(
    `insert into campaigns (campaign_id, owner, wanted, linked, created_at, updated_at)
     values ($1, $2, $3, $4, 1, $5)`,
    [campaignId, `owner-of-${campaignId}`, wanted, linked ? 1 : 0, updatedAt]
  )
}

/**
 * Real waiting: a lease expires by PostgreSQL's own clock (`clock_timestamp()`), which no simulated
 * clock moves. The leases these tests let expire last 100–150 ms.
 */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('LeaseTable', () => {
  it('grants a free lease at epoch 1, and tells another node who holds it', async () => {
    expect(await table.acquire('c1', a, 10_000)).toEqual({
      granted: { epoch: 1, previous: 'none', previousOwner: null, handover: false },
    })
    const refused = await table.acquire('c1', b, 10_000)
    expect(refused).toEqual({
      heldBy: {
        nodeId: 'node-a',
        url: a.url,
        epoch: 1,
        expiresInMs: expect.any(Number),
        released: false,
      },
    })
    const { expiresInMs } = (refused as { heldBy: { expiresInMs: number } }).heldBy
    expect(expiresInMs).toBeGreaterThan(9_000)
    expect(expiresInMs).toBeLessThanOrEqual(10_000)
  })

  it('lets another node take an expired lease at a higher epoch; the old owner can no longer renew it', async () => {
    await table.acquire('c1', a, 150)
    await sleep(250)
    expect(await table.acquire('c1', b, 10_000)).toEqual({
      granted: { epoch: 2, previous: 'expired', previousOwner: 'node-a', handover: false },
    })
    expect(await table.renew('node-a', [{ campaignId: 'c1', epoch: 1 }], 10_000)).toEqual(new Set())
    expect(await table.release('c1', 'node-a', 1)).toBe(false)
    expect((await table.holderOf('c1'))?.nodeId).toBe('node-b')
    expect(await table.expired()).toEqual([])
  })

  it('renews only unexpired leases at their epoch; an expired one stays lost even if nobody took it', async () => {
    await table.acquire('c1', a, 10_000)
    await table.acquire('c2', a, 150)
    await sleep(250)
    expect(await table.expired()).toEqual([{ campaignId: 'c2', nodeId: 'node-a' }])
    const renewed = await table.renew(
      'node-a',
      [
        { campaignId: 'c1', epoch: 1 },
        { campaignId: 'c2', epoch: 1 },
      ],
      10_000
    )
    expect(renewed).toEqual(new Set(['c1']))
    // A wrong epoch renews nothing.
    expect(await table.renew('node-a', [{ campaignId: 'c1', epoch: 7 }], 10_000)).toEqual(new Set())
  })

  it('hands a released lease over at once, saying so (no wait for a paused old owner)', async () => {
    await table.acquire('c1', a, 60_000)
    expect(await table.release('c1', 'node-a', 1)).toBe(true)
    expect(await table.release('c1', 'node-a', 1)).toBe(false)
    expect(await table.acquire('c1', b, 60_000)).toEqual({
      granted: { epoch: 2, previous: 'released', previousOwner: 'node-a', handover: false },
    })
    // The same node acquiring again bumps the epoch: each ownership has its own token.
    expect(await table.acquire('c1', b, 60_000)).toEqual({
      granted: { epoch: 3, previous: 'own', previousOwner: 'node-b', handover: false },
    })
  })

  it("takes its own name's expired lease as expired (an earlier process of it may only be paused)", async () => {
    await table.acquire('c1', a, 100)
    await sleep(150)
    expect(await table.acquire('c1', a, 60_000)).toEqual({
      granted: { epoch: 2, previous: 'expired', previousOwner: 'node-a', handover: false },
    })
    // Held and unexpired, or released by it: its own.
    expect(await table.acquire('c1', a, 60_000)).toMatchObject({ granted: { previous: 'own' } })
    await table.release('c1', 'node-a', 3)
    expect(await table.acquire('c1', a, 60_000)).toMatchObject({ granted: { previous: 'own' } })
  })

  it('has exactly one winner among concurrent acquisitions of an expired lease', async () => {
    await table.acquire('c1', a, 100)
    await sleep(150)
    const nodes = Array.from({ length: 16 }, (_, i) => ({ nodeId: `n${i}`, url: `http://n${i}` }))
    const results = await Promise.all(nodes.map((node) => table.acquire('c1', node, 10_000)))
    const winners = results.flatMap((result, i) => ('granted' in result ? [nodes[i]!.nodeId] : []))
    expect(winners).toHaveLength(1)
    for (const result of results) {
      if ('heldBy' in result) expect(result.heldBy).toMatchObject({ nodeId: winners[0], epoch: 2 })
    }
    expect(await table.holderOf('c1')).toMatchObject({ nodeId: winners[0], epoch: 2 })
  })

  it('lists the nodes heard from recently, the least loaded first', async () => {
    await table.heartbeat({ ...a, liveSessions: 8, maxSessions: 10, draining: false }, 'pa', TTL)
    await table.heartbeat({ ...b, liveSessions: 2, maxSessions: 10, draining: false }, 'pb', TTL)
    const nodes = await table.liveNodes(5_000)
    expect(nodes.map((node) => node.nodeId)).toEqual(['node-b', 'node-a'])
    expect(nodes[0]).toMatchObject({
      url: b.url,
      liveSessions: 2,
      maxSessions: 10,
      draining: false,
    })
    await sleep(200)
    expect(await table.liveNodes(100)).toEqual([])
  })

  it('leave removes the node at once (a clean shutdown)', async () => {
    await table.heartbeat({ ...a, liveSessions: 0, maxSessions: 10, draining: true }, 'pa', TTL)
    await table.heartbeat({ ...b, liveSessions: 0, maxSessions: 10, draining: false }, 'pb', TTL)
    await table.leave('node-b', 'another process') // not its process: it stays
    await table.leave('node-a', 'pa')
    expect((await table.liveNodes(60_000)).map((node) => node.nodeId)).toEqual(['node-b'])
    await table.leave('node-a', 'pa') // twice is harmless
  })

  it("keeps a node's DATA_DIR marker from its heartbeat until another one is published", async () => {
    const beat = { ...b, liveSessions: 0, maxSessions: 10, draining: false }
    await table.heartbeat(beat, 'pb', TTL)
    expect((await table.liveNodes(60_000))[0]).not.toHaveProperty('dataMarker')
    await table.heartbeat({ ...beat, dataMarker: 'token-1' }, 'pb', TTL)
    expect((await table.liveNodes(60_000))[0]).toMatchObject({ dataMarker: 'token-1' })
    await table.heartbeat(beat, 'pb', TTL)
    expect((await table.liveNodes(60_000))[0]).toMatchObject({ dataMarker: 'token-1' })
    expect(await table.publishDataMarker('node-b', 'token-2')).toBe(true)
    expect((await table.liveNodes(60_000))[0]).toMatchObject({ dataMarker: 'token-2' })
    expect(await table.publishDataMarker('node-z', 'token-3')).toBe(false)
  })
})

describe('LeaseTable: one process per NODE_ID', () => {
  it('refuses the heartbeat of a second process with a NODE_ID heard from within the TTL, and takes it once that one is silent', async () => {
    const beat = { ...a, liveSessions: 0, maxSessions: 10, draining: false }
    expect(await table.heartbeat({ ...beat, dataMarker: 'first' }, 'first', 300)).toBeUndefined()
    expect(await table.heartbeat(beat, 'first', 300)).toBeUndefined() // its own: always
    const refused = await table.heartbeat(beat, 'second', 300)
    expect(refused?.silentForMs).toBeGreaterThanOrEqual(0)
    expect(refused?.silentForMs).toBeLessThan(300)
    // The first process falls silent (it was killed): past the TTL the second takes the name,
    // without the first's DATA_DIR marker.
    await sleep(350)
    expect(await table.heartbeat(beat, 'second', 300)).toBeUndefined()
    expect((await table.liveNodes(60_000))[0]).not.toHaveProperty('dataMarker')
    // Now the first one is the stranger, and its clean shutdown does not remove the second.
    expect(await table.heartbeat(beat, 'first', 300)).toMatchObject({
      silentForMs: expect.any(Number),
    })
    await table.leave('node-a', 'first')
    expect((await table.liveNodes(60_000)).map((node) => node.nodeId)).toEqual(['node-a'])
  })
})

describe('LeaseTable: handover and orphans (issue 12: failover and drain)', () => {
  it('a release with handover says so to the next owner, and the next acquisition clears it', async () => {
    await campaign('c1')
    await table.acquire('c1', a, 60_000)
    expect(await table.release('c1', 'node-a', 1, { handover: true })).toBe(true)
    expect(await table.acquire('c1', b, 60_000)).toEqual({
      granted: { epoch: 2, previous: 'released', previousOwner: 'node-a', handover: true },
    })
    expect(await table.orphans()).toEqual([])
    // A plain release (a stop) is no handover.
    await table.release('c1', 'node-b', 2)
    expect(await table.orphans()).toEqual([])
    expect(await table.acquire('c1', a, 60_000)).toEqual({
      granted: { epoch: 3, previous: 'released', previousOwner: 'node-b', handover: false },
    })
  })

  it('lists expired leases of any campaign, handed-over and unleased linked running ones, oldest first', async () => {
    // Unleased: the oldest (updated at epoch ms 1), then the leases in the order they lapsed.
    await campaign('unleased')
    await campaign('unleased-unlinked', { linked: false })
    await campaign('unleased-stopped', { wanted: 'stopped' })
    await campaign('expired-pending', { linked: false })
    await campaign('expired-stopped', { wanted: 'stopped', linked: false })
    await campaign('live')
    await campaign('handed-over')
    await campaign('handed-over-stopped', { wanted: 'stopped' })
    await campaign('released')
    await table.acquire('expired-pending', a, 100)
    await table.acquire('expired-stopped', b, 120)
    // Leases without a campaign row are not offered, and take no room from those with one.
    for (let i = 0; i < 3; i++) await table.acquire(`never-claimed-${i}`, a, 50)
    await table.acquire('live', a, 60_000)
    for (const id of ['handed-over', 'handed-over-stopped', 'released']) {
      await table.acquire(id, a, 60_000)
    }
    await sleep(250)
    await table.release('handed-over', 'node-a', 1, { handover: true })
    await table.release('handed-over-stopped', 'node-a', 1, { handover: true })
    await table.release('released', 'node-a', 1)

    const expected = [
      {
        campaignId: 'unleased',
        kind: 'unleased',
        previousOwner: null,
        owner: 'owner-of-unleased',
        wanted: 'running',
        linked: true,
      },
      {
        campaignId: 'expired-pending',
        kind: 'expired',
        previousOwner: 'node-a',
        owner: 'owner-of-expired-pending',
        wanted: 'running',
        linked: false,
      },
      {
        campaignId: 'expired-stopped',
        kind: 'expired',
        previousOwner: 'node-b',
        owner: 'owner-of-expired-stopped',
        wanted: 'stopped',
        linked: false,
      },
      {
        campaignId: 'handed-over',
        kind: 'handover',
        previousOwner: 'node-a',
        owner: 'owner-of-handed-over',
        wanted: 'running',
        linked: true,
      },
    ]
    expect(await table.orphans()).toEqual(expected)
    expect(await table.orphans(2)).toEqual(expected.slice(0, 2))
    expect(await table.orphans(3)).toEqual(expected.slice(0, 3))

    // Taken by acquire: no longer an orphan.
    expect(await table.acquire('handed-over', b, 60_000)).toMatchObject({
      granted: { previous: 'released', handover: true },
    })
    expect(await table.acquire('unleased', b, 60_000)).toMatchObject({
      granted: { previous: 'none' },
    })
    expect((await table.orphans()).map((orphan) => orphan.campaignId)).toEqual([
      'expired-pending',
      'expired-stopped',
    ])
  })

  it('bounds a scan at MAX_ORPHANS whatever limit is asked', async () => {
    await pool.query(
      `insert into campaigns (campaign_id, owner, wanted, linked, created_at, updated_at)
       select 'c' || i, 'alice', 'running', 1, 1, i from generate_series(1, $1::int) as i`,
      [MAX_ORPHANS + 5]
    )
    const orphans = await table.orphans(1_000_000)
    expect(orphans).toHaveLength(MAX_ORPHANS)
    expect(orphans[0]).toMatchObject({ campaignId: 'c1', kind: 'unleased' })
    expect(await table.orphans(0)).toEqual([])
  })
})
