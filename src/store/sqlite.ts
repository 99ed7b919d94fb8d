/**
 * The embedded store: one SQLite file (better-sqlite3 through Kysely's SqliteDialect).
 *
 * - WAL with `synchronous=NORMAL`: a commit survives the process being killed; after a power loss
 *   the last commits before it may be lost (the database stays consistent).
 * - `locking_mode=EXCLUSIVE`, and the write lock is taken at open: the file belongs to one process
 *   (two services on one `DATA_DIR` would both drive the same WhatsApp logins), and a second one
 *   is refused with a clear message instead of waiting. The busy timeout is 0 so no statement ever
 *   blocks the event loop waiting for a lock.
 * - better-sqlite3 is synchronous: each statement blocks the loop while it runs. The write-behind
 *   batches bound that (one transaction of at most `batchRows` records, then a yield).
 *
 * @module
 */
import { mkdirSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import { Kysely, SqliteDialect, type Driver } from 'kysely'
import type { CampaignStore } from './campaignStore.ts'
import { StoreOpenError, codeOf, messageOf } from './errors.ts'
import { createKyselyStore, type StoreOptions } from './kyselyStore.ts'
import { migrate } from './migrations.ts'
import { withStatementCache } from './statementCache.ts'
import type { Database } from './schema.ts'

export interface SqliteStoreOptions extends StoreOptions {
  /** The database file (`DATA_DIR/qrvisor.db`); its folder is created if missing. */
  path: string
}

/**
 * SQLite rolls a transaction back by itself on some errors (`SQLITE_FULL`, `SQLITE_IOERR`); the
 * `rollback` Kysely then sends fails with "cannot rollback - no transaction is active", and that
 * error replaced the real one (a full disk was reported as a rollback problem). A rollback of a
 * transaction that is already gone is done: the real error goes on.
 */
class RollbackTolerantSqliteDialect extends SqliteDialect {
  override createDriver(): Driver {
    const driver = super.createDriver()
    const rollback = driver.rollbackTransaction.bind(driver)
    driver.rollbackTransaction = async (connection) => {
      try {
        await rollback(connection)
      } catch (error) {
        if (!/no transaction is active/.test(messageOf(error))) throw error
      }
    }
    return driver
  }
}

/** Records per write-behind transaction on SQLite (synchronous: it holds the event loop). */
const SQLITE_BATCH_ROWS = 50

export async function openSqliteStore(options: SqliteStoreOptions): Promise<CampaignStore> {
  const path = resolve(options.path)
  let database: BetterSqlite3.Database | undefined
  try {
    mkdirSync(dirname(path), { recursive: true })
    database = new BetterSqlite3(path, { timeout: 0 })
    // Before the first access, so the connection never uses shared memory for the WAL index.
    database.pragma('locking_mode = EXCLUSIVE')
    database.pragma('journal_mode = WAL')
    database.pragma('synchronous = NORMAL')
    database.pragma('foreign_keys = ON')
    // Take the write lock now (and, in exclusive mode, keep it until close).
    database.exec('BEGIN IMMEDIATE; COMMIT')
  } catch (error) {
    database?.close()
    throw openError(path, error)
  }
  const db = new Kysely<Database>({
    dialect: new RollbackTolerantSqliteDialect({ database: withStatementCache(database) }),
  })
  try {
    await migrate(db, path)
  } catch (error) {
    await db.destroy()
    throw error instanceof StoreOpenError ? error : openError(path, error)
  }
  return createKyselyStore({
    ...options,
    // Each batch blocks the event loop while it commits: a batch of 200 held it for 201 ms in
    // the store benchmark (2 cores, load average 7); a quarter of that bounds it a quarter as long.
    writeBehind: { batchRows: SQLITE_BATCH_ROWS, ...options.writeBehind },
    db,
    kind: 'sqlite',
    location: path,
    isPermanent,
    fencing: false,
    claimConcurrency: 1,
  })
}

/** Constraint violations and values SQLite will not take: writing them again fails again. */
function isPermanent(error: unknown): boolean {
  const code = codeOf(error) ?? ''
  return (
    code.startsWith('SQLITE_CONSTRAINT') ||
    code === 'SQLITE_MISMATCH' ||
    code === 'SQLITE_TOOBIG' ||
    code === 'SQLITE_RANGE'
  )
}

function openError(path: string, error: unknown): StoreOpenError {
  const code = codeOf(error)
  let message: string
  switch (code) {
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      message = `the store ${path} is locked by another process (is another qrvisor running with the same DATA_DIR?): stop it, or give this service a DATA_DIR of its own`
      break
    case 'SQLITE_NOTADB':
    case 'SQLITE_CORRUPT':
      message = `the store ${path} is not a SQLite database or is damaged (${code}: ${messageOf(error)}); nothing was changed: restore a backup, or move the file (with ${path}-wal, if any) away to start with an empty store`
      break
    case 'SQLITE_CANTOPEN':
    case 'SQLITE_READONLY':
    case 'SQLITE_PERM':
    case 'SQLITE_IOERR':
    case 'EACCES':
    case 'EROFS':
    case 'ENOTDIR':
      message = `cannot open the store ${path} (${code}: ${messageOf(error)}): DATA_DIR must be a writable folder`
      break
    default:
      message = `cannot open the store ${path}: ${messageOf(error)}${code ? ` (${code})` : ''}`
  }
  return new StoreOpenError(message, path, { cause: error })
}
