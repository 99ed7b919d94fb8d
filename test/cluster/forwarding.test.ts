/**
 * Any node answers (in-process, two nodes on a real PostgreSQL, one shared DATA_DIR): a
 * campaign's requests asked of the node that does not run it are forwarded to the one that does
 * and answered as it answers them; a start is placed on the node asked while it has room, else on
 * another; a node-to-node header that is not signed with CLUSTER_SECRET is refused.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { signToken } from '../../scripts/token.ts'
import { openLeaseTable } from '../../src/cluster/leaseTable.ts'
import { createNodeSigner } from '../../src/cluster/nodeAuth.ts'
import { closeAll, SECRET, startTestServer, type TestServer } from '../support/edge.ts'
import { startPostgres, type PostgresServer } from '../store/postgresServer.ts'

const CLUSTER_SECRET = 'c'.repeat(40)
let postgres: PostgresServer
let token: string

beforeAll(async () => {
  postgres = await startPostgres()
  token = await signToken({ secret: SECRET, sub: 'alice' })
}, 60_000)

afterAll(async () => {
  await postgres?.stop()
}, 60_000)

const dirs: string[] = []
afterEach(async () => {
  await closeAll()
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
}, 60_000)

let databaseUrl: string

async function twoNodes(env: Record<string, string> = {}): Promise<[TestServer, TestServer]> {
  databaseUrl = await postgres.createDatabase()
  const dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-forwarding-'))
  dirs.push(dataDir)
  const shared = {
    DATABASE_URL: databaseUrl,
    CLUSTER_SECRET,
    DATA_DIR: dataDir,
    LEASE_TTL_MS: '4000',
    KILL_TIMEOUT_MS: '100',
    INIT_TIMEOUT_MS: '5000',
    SCAN_TIMEOUT_MS: '60000',
    ...env,
  }
  const a = await startTestServer({ ...shared, NODE_ID: 'node-a' })
  const b = await startTestServer({ ...shared, NODE_ID: 'node-b' })
  return [a, b]
}

function call(
  server: TestServer,
  method: string,
  path: string,
  headers: Record<string, string> = {}
) {
  return fetch(`${server.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...headers },
  })
}

async function until<T>(probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error('timed out')
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

describe('a cluster of two nodes in one process', () => {
  it('answers a campaign on the node that runs it, through either node', async () => {
    const [a, b] = await twoNodes()
    const started = await call(a, 'POST', '/api/campaigns/spring-sale/qr-code')
    expect(started.status).toBe(202)
    await until(async () =>
      a.sessions.getCampaign('spring-sale').status === 'awaitingScan' ? true : undefined
    )
    const throughB = await call(b, 'GET', '/api/campaigns/spring-sale/connection')
    expect(throughB.status).toBe(200)
    expect(throughB.headers.get('x-qrvisor-answered-by')).toBe('node-a')
    const direct = await call(a, 'GET', '/api/campaigns/spring-sale/connection')
    expect(await throughB.json()).toEqual(await direct.json())
    // The simulator's phone scans through node-b: node-a's engine hears it.
    expect((await call(b, 'POST', '/api/simulator/campaigns/spring-sale/scan')).status).toBe(200)
    await until(async () =>
      a.sessions.getCampaign('spring-sale').status === 'ready' ? true : undefined
    )
    // node-b knows it too (the events through PostgreSQL), without asking.
    await until(async () =>
      b.sessions.getCampaign('spring-sale').status === 'ready' ? true : undefined
    )
    expect(b.sessions.getCampaign('spring-sale').node).toBe('node-a')
    expect(b.sessions.liveEngineSessions()).toEqual([])
    // Another user's token is refused by the node running the campaign, through either node.
    const bob = { Authorization: `Bearer ${await signToken({ secret: SECRET, sub: 'bob' })}` }
    for (const server of [a, b]) {
      for (const [method, path] of [
        ['GET', '/api/campaigns/spring-sale/connection'],
        ['POST', '/api/campaigns/spring-sale/cleanup-session'],
      ] as const) {
        const refused = await fetch(`${server.url}${path}`, { method, headers: bob })
        expect(refused.status).toBe(403)
        expect((await refused.json()).error.code).toBe('forbidden')
      }
    }
    expect(a.sessions.getCampaign('spring-sale').status).toBe('ready')
  })

  it('places a start on another node when the one asked is full', async () => {
    const [a, b] = await twoNodes({ MAX_SESSIONS: '1' })
    // Heartbeats carry each node's load; node-a fills up first.
    expect((await call(a, 'POST', '/api/campaigns/first/qr-code')).status).toBe(202)
    const second = await call(a, 'POST', '/api/campaigns/second/qr-code')
    expect(second.status).toBe(202)
    expect(second.headers.get('x-qrvisor-answered-by')).toBe('node-b')
    expect(b.sessions.liveEngineSessions()).toHaveLength(1)
    // Both full: the cluster is.
    const third = await call(b, 'POST', '/api/campaigns/third/qr-code')
    expect(third.status).toBe(503)
    expect((await third.json()).error.code).toBe('at_capacity')
  })

  it('answers 503 node_unavailable for a change when the node running the campaign does not answer, and a read from what it knows', async () => {
    const [, b] = await twoNodes()
    // A node that took the campaign and then went silent: its lease holds, its address answers nothing.
    const { table, pool } = openLeaseTable(databaseUrl)
    try {
      await table.acquire('ghost', { nodeId: 'node-x', url: 'http://127.0.0.1:1' }, 60_000)
    } finally {
      await pool.end()
    }
    const change = await call(b, 'POST', '/api/campaigns/ghost/cleanup-session')
    expect(change.status).toBe(503)
    expect(change.headers.get('retry-after')).toBe('5')
    expect((await change.json()).error.code).toBe('node_unavailable')
    const read = await call(b, 'GET', '/api/campaigns/ghost/connection')
    expect(read.status).toBe(200)
    expect(read.headers.get('x-qrvisor-answered-by')).toBeNull()
    expect((await read.json()).campaignId).toBe('ghost')
  })

  it('refuses a node-to-node header not signed with CLUSTER_SECRET, and takes a signed one', async () => {
    const [a] = await twoNodes()
    const path = '/api/campaigns/spring-sale/connection'
    const forged = await call(a, 'GET', path, { 'X-Qrvisor-Node': 'node-b.1.x' })
    expect(forged.status).toBe(403)
    expect((await forged.json()).error.code).toBe('forbidden')
    const otherSecret = createNodeSigner('z'.repeat(40)).sign('GET', path, 'node-b')
    expect((await call(a, 'GET', path, { 'X-Qrvisor-Node': otherSecret })).status).toBe(403)
    const signed = createNodeSigner(CLUSTER_SECRET).sign('GET', path, 'node-b')
    expect((await call(a, 'GET', path, { 'X-Qrvisor-Node': signed })).status).toBe(200)
  })
})
