/**
 * The shared store: PostgreSQL through Kysely's PostgresDialect and a `pg` pool, chosen by
 * `DATABASE_URL=postgres://…`. Its writes never block the event loop. Messages name the server as
 * `postgres://user@host:port/database`, never with the password.
 *
 * @module
 */
import { userInfo } from 'node:os'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import type { CampaignStore } from './campaignStore.ts'
import { StoreOpenError, codeOf, messageOf } from './errors.ts'
import { createKyselyStore, type StoreOptions } from './kyselyStore.ts'
import { migrate } from './migrations.ts'
import type { Database } from './schema.ts'

export interface PostgresStoreOptions extends StoreOptions {
  /** `postgres://user:password@host:port/database?…` (anything `pg` accepts in a URL). */
  url: string
  /** Connections in the pool (default: 10). */
  maxConnections?: number
  /** How long a connection attempt may take (default: 10 s). */
  connectTimeoutMs?: number
}

const INT8_OID = 20

/** Epoch milliseconds are `bigint` columns; as numbers they are exact until the year 285,616. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary'
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
}

export async function openPostgresStore(options: PostgresStoreOptions): Promise<CampaignStore> {
  const location = describeUrl(options.url)
  const maxConnections = options.maxConnections ?? 10
  const pool = new pg.Pool({
    connectionString: options.url,
    max: maxConnections,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    application_name: 'qrvisor',
    types,
  })
  // An idle connection the server drops (a restart, a failover) is reported here; without a
  // listener it would take the process down. The next query opens a new connection.
  pool.on('error', (error) =>
    options.logger?.warn(
      { err: messageOf(error) },
      `store: a PostgreSQL connection to ${location} was lost`
    )
  )
  try {
    await pool.query('select 1')
  } catch (error) {
    await pool.end().catch(() => undefined)
    throw openError(location, error)
  }
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
  try {
    await migrate(db, location)
  } catch (error) {
    await db.destroy()
    throw error instanceof StoreOpenError ? error : openError(location, error)
  }
  return createKyselyStore({
    ...options,
    db,
    kind: 'postgres',
    location,
    isPermanent,
    fencing: true,
    // Leaves connections for the write-behind queue and for reads.
    claimConcurrency: Math.max(1, Math.min(4, maxConnections - 2)),
    // One writer fell behind 10,000 sessions starting at once (1,772 changes dropped at the
    // queue's bound in the store benchmark); several transactions at once keep up.
    writeBehind: {
      parallelBatches: Math.max(1, Math.min(4, maxConnections - 4)),
      ...options.writeBehind,
    },
  })
}

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation). */
function isPermanent(error: unknown): boolean {
  const code = codeOf(error) ?? ''
  return /^2[23][0-9A-Z]{3}$/.test(code)
}

/**
 * `postgres://user@host:port/database`, without the password, for messages. Throws a
 * `StoreOpenError` for a URL that is not a PostgreSQL one (without repeating it: it may hold a
 * password).
 */
export function describeUrl(url: string): string {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new StoreOpenError(
      'DATABASE_URL is not a valid URL (expected postgres://user:password@host:port/database)',
      'DATABASE_URL'
    )
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new StoreOpenError(
      `DATABASE_URL must be a postgres:// or postgresql:// URL (it starts with ${parsed.protocol}//); leave it unset for the embedded SQLite store`,
      'DATABASE_URL'
    )
  }
  // Without a user in the URL, pg logs in as PGUSER or as the user running the process.
  const user = decodeURIComponent(parsed.username) || process.env.PGUSER || userInfo().username
  const host = parsed.hostname || parsed.searchParams.get('host') || 'localhost'
  const port = parsed.port || '5432'
  const database = decodeURIComponent(parsed.pathname.slice(1)) || user
  return `postgres://${user}@${host}:${port}/${database}`
}

function openError(location: string, error: unknown): StoreOpenError {
  const code = codeOf(error)
  const detail = `${messageOf(error)}${code ? ` (${code})` : ''}`
  let message: string
  switch (code) {
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      message = `cannot reach PostgreSQL at ${location}: ${detail}; check DATABASE_URL and that the server is running`
      break
    case '28P01':
    case '28000':
      message = `PostgreSQL at ${location} refused the login: ${detail}; check the user and password in DATABASE_URL`
      break
    case '3D000':
      message = `PostgreSQL at ${location}: ${detail}; create the database first`
      break
    default:
      message = /timeout/i.test(messageOf(error))
        ? `cannot reach PostgreSQL at ${location}: ${detail}; check DATABASE_URL and that the server is running`
        : `cannot open the store at ${location}: ${detail}`
  }
  return new StoreOpenError(message, location, { cause: error })
}
