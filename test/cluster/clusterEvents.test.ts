/**
 * Session events between nodes over a real PostgreSQL's LISTEN/NOTIFY: delivered to the other
 * nodes (not back to the sender) in order, and refused by the database once the sender no longer
 * holds the campaign's lease at the epoch it had (fencing).
 */
import type pg from 'pg'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ClusterEvents, type PublishedSessionEvent } from '../../src/cluster/clusterEvents.ts'
import { type LeaseTable } from '../../src/cluster/leaseTable.ts'
import { silentLogger } from '../../src/logger.ts'
import { useLeaseDatabase } from './support/leaseDatabase.ts'
import { startTcpProxy } from './support/tcpProxy.ts'

let url: string
let table: LeaseTable
let pool: pg.Pool
const opened: ClusterEvents[] = []

const db = useLeaseDatabase()
beforeAll(() => {
  ;({ url, table, pool } = db)
})

afterEach(async () => {
  await Promise.all(opened.splice(0).map((events) => events.close()))
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function member(nodeId: string) {
  const received: PublishedSessionEvent[] = []
  const events = new ClusterEvents({
    url,
    nodeId,
    logger: silentLogger,
    onRemote: (event) => received.push(event),
  })
  await events.start()
  opened.push(events)
  return { events, received }
}

/** node-a sending (only) through a TCP proxy of its own, for the test to stall. */
async function senderThroughProxy(options: { maxQueued?: number; queryTimeoutMs: number }) {
  const proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(url).port) })
  const through = new URL(url)
  through.port = String(proxy.port)
  const events = new ClusterEvents({
    url: through.toString(),
    nodeId: 'node-a',
    logger: silentLogger,
    onRemote: () => undefined,
    ...options,
  })
  await events.start()
  opened.push(events)
  return { events, proxy }
}

function qrEvent(campaignId: string, n: number): PublishedSessionEvent {
  return {
    node: 'node-a',
    owner: 'alice',
    event: {
      type: 'qr',
      campaignId,
      sessionId: 's1',
      at: n,
      qr: `QR-${n}`,
      attempt: n,
      expiresAt: 99,
    },
    expiresAt: 99,
    lastSeenAlive: null,
  }
}

async function until(condition: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting')
    await sleep(10)
  }
}

describe('ClusterEvents', () => {
  it('delivers a lease holder’s events to the other nodes in order, not back to itself', async () => {
    const a = await member('node-a')
    const b = await member('node-b')
    const c = await member('node-c')
    const grant = await table.acquire('c1', { nodeId: 'node-a', url: 'http://a' }, 10_000)
    const epoch = 'granted' in grant ? grant.granted.epoch : -1
    for (let n = 1; n <= 300; n++) {
      a.events.publish('c1', { nodeId: 'node-a', epoch }, qrEvent('c1', n))
      // Some in one turn, some in the next: batches and single events keep one order.
      if (n % 50 === 0) await sleep(1)
    }
    await a.events.settled()
    await until(() => b.received.length === 300 && c.received.length === 300)
    expect(b.received.map((event) => event.event.at)).toEqual(
      Array.from({ length: 300 }, (_, i) => i + 1)
    )
    expect(c.received).toEqual(b.received)
    expect(b.received[0]).toEqual(qrEvent('c1', 1))
    await sleep(50)
    expect(a.received).toEqual([])
    expect(a.events.counts).toMatchObject({ published: 300, refused: 0 })
  })

  it('refuses the events of a node whose lease expired or was taken at a newer epoch', async () => {
    const a = await member('node-a')
    const b = await member('node-b')
    const grant = await table.acquire('c2', { nodeId: 'node-a', url: 'http://a' }, 10_000)
    const epoch = 'granted' in grant ? grant.granted.epoch : -1
    // Expired, not yet taken: refused (the node cannot prove it still holds it).
    await pool.query(`update campaign_leases set expires_at = 0 where campaign_id = 'c2'`)
    a.events.publish('c2', { nodeId: 'node-a', epoch }, qrEvent('c2', 1))
    await a.events.settled()
    // Taken by node-b at a newer epoch: refused.
    await table.acquire('c2', { nodeId: 'node-b', url: 'http://b' }, 10_000)
    a.events.publish('c2', { nodeId: 'node-a', epoch }, qrEvent('c2', 2))
    await a.events.settled()
    await sleep(100)
    expect(b.received).toEqual([])
    expect(a.events.counts).toMatchObject({ published: 0, refused: 2 })
  })

  it('still sends the last events of a lease the node released itself', async () => {
    const a = await member('node-a')
    const b = await member('node-b')
    const grant = await table.acquire('c3', { nodeId: 'node-a', url: 'http://a' }, 10_000)
    const epoch = 'granted' in grant ? grant.granted.epoch : -1
    await table.release('c3', 'node-a', epoch)
    a.events.publish('c3', { nodeId: 'node-a', epoch }, qrEvent('c3', 1))
    await a.events.settled()
    await until(() => b.received.length === 1)
  })

  it('bounds what waits while the database does not answer, and sends again on a new connection once it does', async () => {
    const { events: a, proxy } = await senderThroughProxy({ maxQueued: 10, queryTimeoutMs: 300 })
    const b = await member('node-b')
    const grant = await table.acquire('c4', { nodeId: 'node-a', url: 'http://a' }, 60_000)
    const epoch = 'granted' in grant ? grant.granted.epoch : -1
    proxy.stall()
    for (let n = 1; n <= 50; n++) a.publish('c4', { nodeId: 'node-a', epoch }, qrEvent('c4', n))
    // The 40 oldest were dropped at once: at most 10 wait.
    expect(a.counts.failed).toBe(40)
    await a.settled()
    // The 10 that waited failed with the stalled connection.
    expect(a.counts).toMatchObject({ published: 0, failed: 50 })
    proxy.restore()
    a.publish('c4', { nodeId: 'node-a', epoch }, qrEvent('c4', 51))
    await a.settled()
    await until(() => b.received.length === 1)
    expect(b.received[0]!.event.at).toBe(51)
    await a.close()
    await proxy.close()
  })

  it('sends an event published while an earlier one is on its way, with nothing published after it', async () => {
    // The drain of a rolling restart waited for a `ready` that sat in its node's queue: it was
    // published while the previous batch was being sent, and nothing came after it. On a healthy
    // database that window is one round trip; the stalled proxy holds it open.
    const { events: a, proxy } = await senderThroughProxy({ queryTimeoutMs: 500 })
    const b = await member('node-b')
    const grant = await table.acquire('c5', { nodeId: 'node-a', url: 'http://a' }, 60_000)
    const epoch = 'granted' in grant ? grant.granted.epoch : -1
    proxy.stall()
    a.publish('c5', { nodeId: 'node-a', epoch }, qrEvent('c5', 1))
    await sleep(50) // its send is under way, and hangs
    a.publish('c5', { nodeId: 'node-a', epoch }, qrEvent('c5', 2))
    await sleep(50)
    proxy.restore() // the first send fails; nobody publishes or waits for anything any more
    await until(() => b.received.length === 1, 3_000)
    expect(b.received[0]!.event.at).toBe(2)
    // The sender counts it when the database answers, which may be after b heard it.
    await until(() => a.counts.published === 1)
    expect(a.counts).toMatchObject({ published: 1, failed: 1 })
    await a.close()
    await proxy.close()
  })

  it('tells the other nodes of a handover', async () => {
    const a = await member('node-a')
    let told = 0
    const b = new ClusterEvents({
      url,
      nodeId: 'node-b',
      logger: silentLogger,
      onRemote: () => undefined,
      onHandover: () => told++,
    })
    await b.start()
    opened.push(b)
    a.events.announceHandover()
    await until(() => told === 1)
  })
})
