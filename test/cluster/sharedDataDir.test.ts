/**
 * The shared DATA_DIR check (issue 12) on a real PostgreSQL: nodes on one folder start, a node on
 * a folder of its own is refused with a message naming the other node and the marker's path.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type pg from 'pg'
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { type LeaseTable } from '../../src/cluster/leaseTable.ts'
import {
  checkSharedDataDir,
  DataDirNotSharedError,
  markerPath,
  removeDataDirMarker,
} from '../../src/cluster/sharedDataDir.ts'
import { useLeaseDatabase } from './support/leaseDatabase.ts'

let table: LeaseTable
let pool: pg.Pool
const folders: string[] = []

const db = useLeaseDatabase()
beforeAll(() => {
  ;({ table, pool } = db)
})

beforeEach(async () => {
  await pool.query('delete from cluster_nodes')
})

afterEach(() => {
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true })
})

function folder(): string {
  const path = mkdtempSync(join(tmpdir(), 'qrvisor-data-'))
  folders.push(path)
  return path
}

async function heartbeat(nodeId: string): Promise<void> {
  await table.heartbeat(
    { nodeId, url: `http://${nodeId}`, liveSessions: 0, maxSessions: 10, draining: false },
    `process of ${nodeId}`,
    60_000
  )
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('checkSharedDataDir', () => {
  it('passes for nodes on one folder, each publishing the token of its marker', async () => {
    const shared = folder()
    await heartbeat('web-1:3000')
    const first = await checkSharedDataDir({
      dataDir: shared,
      nodeId: 'web-1:3000',
      table,
      ttlMs: 15_000,
    })
    expect(readFileSync(markerPath(shared, 'web-1:3000'), 'utf8').trim()).toBe(first.token)
    await heartbeat('web-2:3000')
    const second = await checkSharedDataDir({
      dataDir: shared,
      nodeId: 'web-2:3000',
      table,
      ttlMs: 15_000,
      timeoutMs: 500,
    })
    expect(second.token).not.toBe(first.token)
    const markers = Object.fromEntries(
      (await table.liveNodes(15_000)).map((node) => [node.nodeId, node.dataMarker])
    )
    expect(markers).toEqual({ 'web-1:3000': first.token, 'web-2:3000': second.token })
  })

  it('refuses a node whose DATA_DIR is not the others’, naming the node and the marker', async () => {
    await heartbeat('web-1:3000')
    await checkSharedDataDir({ dataDir: folder(), nodeId: 'web-1:3000', table, ttlMs: 15_000 })
    await heartbeat('web-2:3000')
    const own = folder()
    const startedAt = Date.now()
    const refused = await checkSharedDataDir({
      dataDir: own,
      nodeId: 'web-2:3000',
      table,
      ttlMs: 15_000,
      timeoutMs: 300,
      pollMs: 50,
    }).then(
      () => undefined,
      (error: unknown) => error
    )
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(300)
    expect(refused).toBeInstanceOf(DataDirNotSharedError)
    const path = markerPath(own, 'web-1:3000')
    expect((refused as Error).message).toBe(
      `DATA_DIR is not shared with node web-1:3000: its marker ${path} never showed up ` +
        '(waited 300 ms); every node must mount the same DATA_DIR (NFS, EFS, a shared volume): ' +
        'the saved WhatsApp logins are there'
    )
    expect(refused).toMatchObject({ nodeId: 'web-1:3000', path })
  })

  it('refuses a marker holding another token (another folder that happens to have one)', async () => {
    const own = folder()
    await heartbeat('web-1:3000')
    await checkSharedDataDir({ dataDir: own, nodeId: 'web-1:3000', table, ttlMs: 15_000 })
    const path = markerPath(own, 'web-1:3000')
    // web-1 published the token of a marker in another folder.
    await table.publishDataMarker('web-1:3000', 'the-token-of-another-folder')
    await heartbeat('web-2:3000')
    const refused = await checkSharedDataDir({
      dataDir: own,
      nodeId: 'web-2:3000',
      table,
      ttlMs: 15_000,
      timeoutMs: 100,
      pollMs: 50,
    }).catch((error: unknown) => error)
    expect((refused as Error).message).toMatch(
      new RegExp(
        `^DATA_DIR is not shared with node web-1:3000: its marker ${path} holds another token`
      )
    )
  })

  it('waits for a marker that shows up late (a network file system caching attributes)', async () => {
    const shared = folder()
    await heartbeat('web-1:3000')
    const path = markerPath(shared, 'web-1:3000')
    await checkSharedDataDir({ dataDir: shared, nodeId: 'web-1:3000', table, ttlMs: 15_000 })
    const token = readFileSync(path, 'utf8').trim()
    rmSync(path)
    setTimeout(() => writeFileSync(path, `${token}\n`), 300)
    await heartbeat('web-2:3000')
    await expect(
      checkSharedDataDir({
        dataDir: shared,
        nodeId: 'web-2:3000',
        table,
        ttlMs: 15_000,
        timeoutMs: 5_000,
        pollMs: 50,
      })
    ).resolves.toEqual({ token: expect.any(String) })
  })

  it('checks only nodes heard from within the lease TTL', async () => {
    await heartbeat('gone:3000')
    await checkSharedDataDir({ dataDir: folder(), nodeId: 'gone:3000', table, ttlMs: 15_000 })
    await sleep(200)
    await heartbeat('web-2:3000')
    await expect(
      checkSharedDataDir({
        dataDir: folder(),
        nodeId: 'web-2:3000',
        table,
        ttlMs: 150,
        timeoutMs: 100,
      })
    ).resolves.toEqual({ token: expect.any(String) })
  })

  it('needs the node’s heartbeat row first', async () => {
    await expect(
      checkSharedDataDir({ dataDir: folder(), nodeId: 'web-9:3000', table, ttlMs: 15_000 })
    ).rejects.toThrow(/has no heartbeat row yet; call it after its first heartbeat/)
  })

  it('removes its own marker at a clean shutdown, not a newer one of the same node id', async () => {
    const shared = folder()
    await heartbeat('web-1:3000')
    const { token: old } = await checkSharedDataDir({
      dataDir: shared,
      nodeId: 'web-1:3000',
      table,
      ttlMs: 15_000,
    })
    await checkSharedDataDir({ dataDir: shared, nodeId: 'web-1:3000', table, ttlMs: 15_000 })
    const path = markerPath(shared, 'web-1:3000')
    await removeDataDirMarker({ dataDir: shared, nodeId: 'web-1:3000', token: old })
    expect(existsSync(path)).toBe(true)
    const current = readFileSync(path, 'utf8').trim()
    await removeDataDirMarker({ dataDir: shared, nodeId: 'web-1:3000', token: current })
    expect(existsSync(path)).toBe(false)
  })
})

describe('markerPath', () => {
  it('makes a safe file name of any node id, distinct for distinct ids', () => {
    const a = markerPath('/data', 'web-1:3000')
    const b = markerPath('/data', 'web-1_3000')
    expect(a).toMatch(/^\/data\/cluster\/web-1_3000-[0-9a-f]{8}\.marker$/)
    expect(b).not.toBe(a)
    expect(markerPath('/data', '../../etc/passwd')).toMatch(/^\/data\/cluster\/_[^/]*\.marker$/)
  })
})
