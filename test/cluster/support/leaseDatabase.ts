/**
 * A throwaway PostgreSQL database with the store's schema and a lease table on it, for the
 * cluster's unit tests: `useLeaseDatabase()` starts it before the file's tests and stops it after
 * them (no server, database or connection outlives the file).
 *
 * @example
 * const db = useLeaseDatabase()
 * it('…', async () => { await db.table.acquire('c1', node, 10_000) })
 */
import type pg from 'pg'
import { afterAll, beforeAll } from 'vitest'
import { openLeaseTable, type LeaseTable } from '../../../src/cluster/leaseTable.ts'
import { openStore } from '../../../src/store/index.ts'
import { startPostgres, type PostgresServer } from '../../store/postgresServer.ts'

export interface LeaseDatabase {
  readonly url: string
  readonly table: LeaseTable
  readonly pool: pg.Pool
}

export function useLeaseDatabase(): LeaseDatabase {
  let server: PostgresServer | undefined
  let opened: { url: string; table: LeaseTable; pool: pg.Pool } | undefined
  beforeAll(async () => {
    server = await startPostgres()
    const url = await server.createDatabase()
    // The store creates the tables (its migrations).
    await (await openStore({ dataDir: '/nonexistent', databaseUrl: url })).close()
    opened = { url, ...openLeaseTable(url) }
  }, 60_000)
  afterAll(async () => {
    await opened?.pool.end()
    if (opened) await server?.dropDatabase(opened.url)
    await server?.stop()
  }, 60_000)
  const ready = () => {
    if (!opened) throw new Error('the lease database is used before its beforeAll ran')
    return opened
  }
  return {
    get url() {
      return ready().url
    },
    get table() {
      return ready().table
    },
    get pool() {
      return ready().pool
    },
  }
}
