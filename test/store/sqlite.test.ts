/**
 * The campaign store on SQLite (`DATA_DIR/qrvisor.db`): the shared contract, then what only the
 * embedded store does (the file is locked to one process; a damaged file is refused).
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  openStore,
  SQLITE_FILE,
  StoreOpenError,
  type CampaignStore,
} from '../../src/store/index.ts'
import { describeStoreContract, type StoreFixture } from './storeContract.ts'

function query(path: string, statement: string): Array<Record<string, unknown>> {
  const database = new BetterSqlite3(path, { timeout: 0 })
  try {
    const prepared = database.prepare(statement)
    if (prepared.reader) return prepared.all() as Array<Record<string, unknown>>
    prepared.run()
    return []
  } finally {
    database.close()
  }
}

const FULL_DISK = 'test/store/fixtures/fullDisk.ts'

/** Whether this machine lets a test mount a tmpfs in a mount namespace of its own (root). */
function canMountTmpfs(): boolean {
  const probe = spawnSync('unshare', ['-m', 'sh', '-c', 'mount -t tmpfs -o size=64k tmpfs /mnt'], {
    stdio: 'ignore',
  })
  return probe.status === 0
}

describeStoreContract('SQLite', {
  async create(): Promise<StoreFixture> {
    const dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-store-'))
    return {
      location: { dataDir, databaseUrl: null },
      query: async (statement) => query(join(dataDir, SQLITE_FILE), statement),
      shared: false,
    }
  },
  async destroy(fixture) {
    rmSync(fixture.location.dataDir, { recursive: true, force: true })
  },
})

describe('SQLite campaign store: opening', () => {
  let dataDir: string
  const opened: CampaignStore[] = []

  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-store-'))
  })

  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close()
    rmSync(dataDir, { recursive: true, force: true })
  })

  async function refusal(options: { dataDir: string }): Promise<StoreOpenError> {
    const error = await openStore({ ...options, pruneIntervalMs: 0 }).then(
      (store) => {
        opened.push(store)
        throw new Error('the store opened')
      },
      (error: unknown) => error
    )
    expect(error).toBeInstanceOf(StoreOpenError)
    return error as StoreOpenError
  }

  it('uses DATA_DIR/qrvisor.db in WAL mode, creating the folder', async () => {
    const nested = join(dataDir, 'a', 'b')
    const store = await openStore({ dataDir: nested, pruneIntervalMs: 0 })
    expect(store.location).toBe(join(nested, SQLITE_FILE))
    await store.close()
    expect(query(join(nested, SQLITE_FILE), 'pragma journal_mode')).toEqual([
      { journal_mode: 'wal' },
    ])
  })

  it('refuses a file another store in this process has open, naming it', async () => {
    opened.push(await openStore({ dataDir, pruneIntervalMs: 0 }))
    const error = await refusal({ dataDir })
    expect(error.location).toBe(join(dataDir, SQLITE_FILE))
    expect(error.message).toContain(join(dataDir, SQLITE_FILE))
    expect(error.message).toMatch(/locked by another process/)
  })

  it('refuses a file another process has open, naming it', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'test/store/fixtures/claimThenWait.ts'],
      {
        env: { ...process.env, STORE_DATA_DIR: dataDir, STORE_DATABASE_URL: '' },
        stdio: ['ignore', 'pipe', 'inherit'],
      }
    )
    const exited = new Promise((resolve) => child.once('exit', resolve))
    try {
      await new Promise((resolve, reject) => {
        child.stdout.once('data', resolve)
        child.once('exit', () => reject(new Error('the child exited first')))
      })
      const error = await refusal({ dataDir })
      expect(error.message).toMatch(/locked by another process/)
      expect(error.message).toContain(join(dataDir, SQLITE_FILE))
    } finally {
      child.kill('SIGKILL')
      await exited
    }
    // Once that process is gone, the file opens (and what it committed is there).
    const store = await openStore({ dataDir, pruneIntervalMs: 0 })
    opened.push(store)
    expect((await store.getCampaign('c1'))?.owner).toBe('alice')
  })

  it.skipIf(!canMountTmpfs())(
    'says a full disk is full (not a rollback problem), and writes again once there is space',
    () => {
      const script = `mount -t tmpfs -o size=2m tmpfs "$STORE_DATA_DIR" && exec "$@"`
      const run = spawnSync(
        'unshare',
        ['-m', 'sh', '-c', script, 'sh', process.execPath, '--import', 'tsx', FULL_DISK],
        { env: { ...process.env, STORE_DATA_DIR: dataDir }, encoding: 'utf8', timeout: 30_000 }
      )
      expect(run.status, run.stderr).toBe(0)
      expect(JSON.parse(run.stdout)).toEqual({
        claim: 'database or disk is full',
        flush: 'database or disk is full',
        flushAfter: 'ok',
        claimAfter: 'ok',
        wanted: 'stopped',
      })
    }
  )

  it('refuses a file that is not a SQLite database, and leaves it as it was', async () => {
    const path = join(dataDir, SQLITE_FILE)
    const garbage = Buffer.from('this is not a database '.repeat(100))
    writeFileSync(path, garbage)
    const error = await refusal({ dataDir })
    expect(error.message).toContain(path)
    expect(error.message).toMatch(/not a SQLite database or is damaged/)
    expect(error.message).toMatch(/nothing was changed/)
    expect(readFileSync(path)).toEqual(garbage)
  })

  it('refuses a DATA_DIR that is not a folder, naming the path', async () => {
    const file = join(dataDir, 'not-a-folder')
    writeFileSync(file, '')
    const error = await refusal({ dataDir: file })
    expect(error.message).toContain(join(file, SQLITE_FILE))
  })
})

describe('SQLite campaign store: fences (issue 12)', () => {
  it('ignores a write fence: there is no cluster on SQLite', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-store-'))
    const store = await openStore({ dataDir, pruneIntervalMs: 0 })
    try {
      await store.claim('spring-sale', 'alice')
      store.saveSession(
        {
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
        },
        { nodeId: 'node-a', epoch: 7 }
      )
      store.setLinked('spring-sale', true, { nodeId: 'node-a', epoch: 7 })
      expect(await store.getCampaign('spring-sale')).toMatchObject({
        linked: true,
        lastSession: { sessionId: 's1', status: 'ready' },
      })
      expect(store.health().fenced).toBe(0)
    } finally {
      await store.close()
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
