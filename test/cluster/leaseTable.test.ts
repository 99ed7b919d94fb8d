/**
 * The lease table on a real PostgreSQL (a throwaway cluster, or TEST_DATABASE_URL): one winner
 * per campaign, epochs that only grow, expiry by the database's clock, renewals that fail for a
 * lease lost, releases, and the nodes' heartbeats.
 */
import type pg from 'pg'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { openLeaseTable, type LeaseTable } from '../../src/cluster/leaseTable.ts'
import { openStore } from '../../src/store/index.ts'
import { startPostgres, type PostgresServer } from '../store/postgresServer.ts'

let server: PostgresServer
let url: string
let table: LeaseTable
let pool: pg.Pool

const a = { nodeId: 'node-a', url: 'http://10.0.0.1:3000' }
const b = { nodeId: 'node-b', url: 'http://10.0.0.2:3000' }

beforeAll(async () => {
  server = await startPostgres()
  url = await server.createDatabase()
  // The store creates the tables (its migrations).
  await (await openStore({ dataDir: '/nonexistent', databaseUrl: url })).close()
  ;({ table, pool } = openLeaseTable(url))
}, 60_000)

afterAll(async () => {
  await pool?.end()
  await server?.dropDatabase(url)
  await server?.stop()
}, 60_000)

beforeEach(async () => {
  await pool.query('delete from campaign_leases')
  await pool.query('delete from cluster_nodes')
})

/**
 * Real waiting: a lease expires by PostgreSQL's own clock (`clock_timestamp()`), which no simulated
 * clock moves. The leases these tests let expire last 100–150 ms.
 */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('LeaseTable', () => {
  it('grants a free lease at epoch 1, and tells another node who holds it', async () => {
    expect(await table.acquire('c1', a, 10_000)).toEqual({
      granted: { epoch: 1, previous: 'none', previousOwner: null },
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
      granted: { epoch: 2, previous: 'expired', previousOwner: 'node-a' },
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
      granted: { epoch: 2, previous: 'released', previousOwner: 'node-a' },
    })
    // The same node acquiring again bumps the epoch: each ownership has its own token.
    expect(await table.acquire('c1', b, 60_000)).toEqual({
      granted: { epoch: 3, previous: 'own', previousOwner: 'node-b' },
    })
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
    await table.heartbeat({ ...a, liveSessions: 8, maxSessions: 10, draining: false })
    await table.heartbeat({ ...b, liveSessions: 2, maxSessions: 10, draining: false })
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
})
