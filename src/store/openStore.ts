/**
 * Opens the configured store: PostgreSQL when a `DATABASE_URL` is given, otherwise the embedded
 * SQLite file `DATA_DIR/qrvisor.db`.
 *
 * @module
 */
import { join } from 'node:path'
import type { CampaignStore } from './campaignStore.ts'
import type { StoreOptions } from './kyselyStore.ts'
import { openPostgresStore } from './postgres.ts'
import { openSqliteStore } from './sqlite.ts'

export interface OpenStoreOptions extends StoreOptions {
  dataDir: string
  /** `DATABASE_URL`: `postgres://…`; unset or empty for SQLite. */
  databaseUrl?: string | null
}

/** The file name of the embedded store inside `DATA_DIR`. */
export const SQLITE_FILE = 'qrvisor.db'

/**
 * Opens, migrates and returns the store; rejects with a `StoreOpenError` that says what and where.
 *
 * @example
 * const store = await openStore({ dataDir: config.dataDir, databaseUrl: process.env.DATABASE_URL, logger })
 * const { owner } = await store.claim('spring-sale', 'alice')
 */
export function openStore({
  dataDir,
  databaseUrl,
  ...options
}: OpenStoreOptions): Promise<CampaignStore> {
  if (databaseUrl) return openPostgresStore({ ...options, url: databaseUrl })
  return openSqliteStore({ ...options, path: join(dataDir, SQLITE_FILE) })
}
