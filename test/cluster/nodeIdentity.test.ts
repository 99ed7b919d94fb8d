/**
 * One process per NODE_ID, on a real PostgreSQL: a second process of a live node's name is
 * refused at its start; a process whose predecessor of the name was killed waits until that one
 * is silent, then joins; a process whose name was taken while it was silent is told at its next
 * heartbeat.
 */
import { Writable } from 'node:stream'
import pino from 'pino'
import { beforeEach, describe, expect, it } from 'vitest'
import { nodeIdentity, NodeIdInUseError } from '../../src/cluster/nodeIdentity.ts'
import { silentLogger } from '../../src/logger.ts'
import { useLeaseDatabase } from './support/leaseDatabase.ts'

const db = useLeaseDatabase()

beforeEach(async () => {
  await db.pool.query('delete from cluster_nodes')
})

const TTL_MS = 400
const beat = () => ({
  nodeId: 'web-1',
  url: 'http://10.0.0.1:3000',
  liveSessions: 0,
  maxSessions: 10,
  draining: false,
})
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function identity(joinWaitMs = 3 * TTL_MS, logger = silentLogger) {
  return nodeIdentity({ table: db.table, ttlMs: TTL_MS, joinWaitMs, logger })
}

/** A process of the name that keeps beating every TTL/4 until stopped. */
function beating(process: ReturnType<typeof identity>) {
  let running = true
  const done = (async () => {
    while (running) {
      await process.heartbeat(beat())
      await sleep(TTL_MS / 4)
    }
  })()
  return {
    async stop() {
      running = false
      await done
    },
  }
}

describe('nodeIdentity', () => {
  it('refuses a second process of a live node’s name once it has waited past the TTL', async () => {
    const first = identity()
    await first.join(beat)
    const alive = beating(first)
    const started = Date.now()
    const refused = await identity(2 * TTL_MS)
      .join(beat)
      .then(
        () => undefined,
        (error: unknown) => error
      )
    await alive.stop()
    expect(refused).toBeInstanceOf(NodeIdInUseError)
    expect((refused as Error).message).toMatch(
      /^NODE_ID web-1 is in use by another live node \(its last heartbeat \d+ ms ago\): every node needs its own NODE_ID$/
    )
    expect(Date.now() - started).toBeGreaterThanOrEqual(2 * TTL_MS)
  })

  it('lets the next process of the name join once the killed one has been silent for the TTL, and says it waited', async () => {
    const first = identity()
    await first.join(beat)
    const killedAt = Date.now() // it never beats again
    const lines: Array<{ msg: string; silentForMs?: number }> = []
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(JSON.parse(String(chunk)) as { msg: string })
          done()
        },
      })
    )
    await identity(3 * TTL_MS, logger).join(beat)
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(TTL_MS - 50)
    expect(lines).toEqual([
      expect.objectContaining({
        msg: 'another process with this NODE_ID was heard from recently: waiting for it to fall silent (a restart after a crash); if it goes on beating, this one is refused',
        silentForMs: expect.any(Number),
      }),
    ])
  })

  it('tells a process whose name another one took while it was silent, at its next heartbeat', async () => {
    const first = identity()
    await first.join(beat)
    await sleep(TTL_MS + 50) // paused past the TTL
    const second = identity()
    await second.join(beat)
    await expect(first.heartbeat(beat())).rejects.toBeInstanceOf(NodeIdInUseError)
    // The second keeps the name.
    await expect(second.heartbeat(beat())).resolves.toBeUndefined()
  })
})
