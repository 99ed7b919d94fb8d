/**
 * Versioned migrations, run at open by Kysely's `Migrator` (each in its own transaction, under a
 * lock, recorded in `qrvisor_migration`). Names sort in the order they run; a released migration
 * is never edited, only followed by a new one.
 *
 * A database that has run a migration this version does not know was written by a newer
 * qrvisor: opening it is refused before anything is written, since this version cannot know what
 * the newer schema means.
 *
 * @module
 */
import { Migrator, PostgresAdapter, sql, type Kysely, type Migration } from 'kysely'
import { StoreOpenError, codeOf, messageOf } from './errors.ts'

export const MIGRATION_TABLE = 'qrvisor_migration'
const MIGRATION_LOCK_TABLE = 'qrvisor_migration_lock'

// The migrations build on the schema as it was when they were written, not on today's types.
type AnyDb = Kysely<any> // eslint-disable-line @typescript-eslint/no-explicit-any

export const MIGRATIONS: Record<string, Migration> = {
  '0001_campaigns_and_sessions': {
    async up(db: AnyDb) {
      await db.schema
        .createTable('campaigns')
        .addColumn('campaign_id', 'text', (column) => column.primaryKey())
        .addColumn('owner', 'text', (column) => column.notNull())
        .addColumn('wanted', 'text', (column) =>
          column.notNull().check(sql`wanted in ('running', 'stopped')`)
        )
        .addColumn('linked', 'integer', (column) =>
          column
            .notNull()
            .defaultTo(0)
            .check(sql`linked in (0, 1)`)
        )
        .addColumn('created_at', 'bigint', (column) => column.notNull())
        .addColumn('updated_at', 'bigint', (column) => column.notNull())
        .execute()
      await db.schema
        .createIndex('campaigns_by_owner')
        .on('campaigns')
        .columns(['owner', 'campaign_id'])
        .execute()
      // What a restore at start reads: linked campaigns that should run.
      await db.schema
        .createIndex('campaigns_to_restore')
        .on('campaigns')
        .column('campaign_id')
        .where(sql.ref('wanted'), '=', 'running')
        .where(sql.ref('linked'), '=', 1)
        .execute()

      await db.schema
        .createTable('sessions')
        .addColumn('session_id', 'text', (column) => column.primaryKey())
        .addColumn('campaign_id', 'text', (column) =>
          column.notNull().references('campaigns.campaign_id')
        )
        .addColumn('status', 'text', (column) => column.notNull())
        .addColumn('reason', 'text')
        .addColumn('detail', 'text')
        .addColumn('history', 'text', (column) => column.notNull())
        .addColumn('started_at', 'bigint', (column) => column.notNull())
        .addColumn('updated_at', 'bigint', (column) => column.notNull())
        .addColumn('ended_at', 'bigint')
        .execute()
      await db.schema
        .createIndex('sessions_by_campaign')
        .on('sessions')
        .columns(['campaign_id', 'started_at'])
        .execute()
      await db.schema
        .createIndex('sessions_by_end')
        .on('sessions')
        .column('ended_at')
        .where(sql.ref('ended_at'), 'is not', null)
        .execute()
    },
  },

  '0002_webhooks': {
    async up(db: AnyDb) {
      await db.schema
        .createTable('webhook_endpoints')
        .addColumn('endpoint_id', 'text', (column) => column.primaryKey())
        .addColumn('campaign_id', 'text', (column) => column.references('campaigns.campaign_id'))
        .addColumn('url', 'text', (column) => column.notNull())
        .addColumn('events', 'text', (column) => column.notNull())
        .addColumn('secret', 'text')
        .addColumn('created_at', 'bigint', (column) => column.notNull())
        .addColumn('disabled_at', 'bigint')
        .addColumn('disabled_reason', 'text')
        .execute()
      // One endpoint per campaign (the service-wide one has no campaign).
      await db.schema
        .createIndex('webhook_endpoints_by_campaign')
        .on('webhook_endpoints')
        .column('campaign_id')
        .unique()
        .execute()

      // The position orders deliveries across restarts; each database spells an auto-increment
      // its own way.
      const isPostgres = db.getExecutor().adapter instanceof PostgresAdapter
      await db.schema
        .createTable('webhook_deliveries')
        .addColumn('position', isPostgres ? 'bigserial' : 'integer', (column) =>
          isPostgres ? column.primaryKey() : column.primaryKey().autoIncrement()
        )
        .addColumn('delivery_id', 'text', (column) => column.notNull().unique())
        .addColumn('endpoint_id', 'text', (column) => column.notNull())
        .addColumn('campaign_id', 'text', (column) => column.notNull())
        .addColumn('type', 'text', (column) => column.notNull())
        .addColumn('payload', 'text', (column) => column.notNull())
        .addColumn('status', 'text', (column) =>
          column.notNull().check(sql`status in ('pending', 'delivered', 'failed', 'cancelled')`)
        )
        .addColumn('attempts', 'integer', (column) => column.notNull().defaultTo(0))
        .addColumn('last_error', 'text')
        .addColumn('next_attempt_at', 'bigint', (column) => column.notNull())
        .addColumn('lease_until', 'bigint')
        .addColumn('created_at', 'bigint', (column) => column.notNull())
        .addColumn('updated_at', 'bigint', (column) => column.notNull())
        .addColumn('delivered_at', 'bigint')
        .execute()
      // The head of each lane (an endpoint and a campaign): what the worker reads.
      await db.schema
        .createIndex('webhook_deliveries_pending')
        .on('webhook_deliveries')
        .columns(['endpoint_id', 'campaign_id', 'position'])
        .where(sql.ref('status'), '=', 'pending')
        .execute()
      // Pending deliveries in the order they become due.
      await db.schema
        .createIndex('webhook_deliveries_due')
        .on('webhook_deliveries')
        .columns(['next_attempt_at', 'position'])
        .where(sql.ref('status'), '=', 'pending')
        .execute()
      await db.schema
        .createIndex('webhook_deliveries_by_campaign')
        .on('webhook_deliveries')
        .columns(['campaign_id', 'position'])
        .execute()
      // What pruning reads.
      await db.schema
        .createIndex('webhook_deliveries_ended')
        .on('webhook_deliveries')
        .column('updated_at')
        .where(sql.ref('status'), '!=', 'pending')
        .execute()
    },
  },

  '0003_cluster': {
    async up(db: AnyDb) {
      // The nodes of a cluster (PostgreSQL): who is alive, where, and how loaded (heartbeats).
      await db.schema
        .createTable('cluster_nodes')
        .addColumn('node_id', 'text', (column) => column.primaryKey())
        .addColumn('url', 'text', (column) => column.notNull())
        .addColumn('heartbeat_at', 'bigint', (column) => column.notNull())
        .addColumn('started_at', 'bigint', (column) => column.notNull())
        .addColumn('live_sessions', 'integer', (column) => column.notNull().defaultTo(0))
        .addColumn('max_sessions', 'integer', (column) => column.notNull().defaultTo(0))
        .addColumn('draining', 'integer', (column) =>
          column
            .notNull()
            .defaultTo(0)
            .check(sql`draining in (0, 1)`)
        )
        .execute()
      // Who runs each campaign's session: the owner node, the fencing token (an epoch that only
      // grows) and the expiry, by the database's clock (epoch ms).
      await db.schema
        .createTable('campaign_leases')
        .addColumn('campaign_id', 'text', (column) => column.primaryKey())
        .addColumn('owner_node', 'text', (column) => column.notNull())
        .addColumn('owner_url', 'text', (column) => column.notNull())
        .addColumn('epoch', 'bigint', (column) => column.notNull())
        .addColumn('expires_at', 'bigint', (column) => column.notNull())
        .addColumn('released', 'integer', (column) =>
          column
            .notNull()
            .defaultTo(0)
            .check(sql`released in (0, 1)`)
        )
        .execute()
      await db.schema
        .createIndex('campaign_leases_by_owner')
        .on('campaign_leases')
        .columns(['owner_node', 'expires_at'])
        .execute()
    },
  },

  '0004_campaign_proxy': {
    async up(db: AnyDb) {
      // A campaign's own proxy (JSON: its address and credentials); null: none of its own.
      await db.schema.alterTable('campaigns').addColumn('proxy', 'text').execute()
    },
  },

  '0005_session_last_seen_alive': {
    async up(db: AnyDb) {
      // When the session's last liveness probe found WhatsApp connected (epoch ms).
      await db.schema.alterTable('sessions').addColumn('last_seen_alive', 'bigint').execute()
    },
  },

  '0006_cluster_failover': {
    async up(db: AnyDb) {
      // A release that hands the campaign over (a drain, a graceful shutdown): another node should
      // start it at once, while a plain release (a stop) leaves it stopped.
      await db.schema
        .alterTable('campaign_leases')
        .addColumn('handover', 'integer', (column) =>
          column
            .notNull()
            .defaultTo(0)
            .check(sql`handover in (0, 1)`)
        )
        .execute()
      // The token of the node's marker file in DATA_DIR: the other nodes check they see the file.
      await db.schema.alterTable('cluster_nodes').addColumn('data_marker', 'text').execute()
      // What the failover scan reads: leases not released (expired ones among them), and
      // leases handed over, each in expiry order.
      await db.schema
        .createIndex('campaign_leases_unreleased')
        .on('campaign_leases')
        .column('expires_at')
        .where(sql.ref('released'), '=', 0)
        .execute()
      await db.schema
        .createIndex('campaign_leases_handed_over')
        .on('campaign_leases')
        .column('expires_at')
        .where(sql.ref('handover'), '=', 1)
        .execute()
    },
  },

  '0007_session_node': {
    async up(db: AnyDb) {
      // The cluster node (`NODE_ID`) that ran the session; null outside a cluster.
      await db.schema.alterTable('sessions').addColumn('node', 'text').execute()
    },
  },

  '0008_node_instance': {
    async up(db: AnyDb) {
      // The process that holds a NODE_ID: a second live process with the same NODE_ID is refused
      // (the leases name nodes, so two processes of one name could both run a campaign).
      await db.schema.alterTable('cluster_nodes').addColumn('instance', 'text').execute()
    },
  },
}

/**
 * Brings the schema up to date. Throws a `StoreOpenError` naming `location` when the database was
 * migrated by a newer version or a migration fails (a failed migration is rolled back whole).
 */
export async function migrate(db: AnyDb, location: string): Promise<void> {
  const unknown = (await executedMigrations(db)).filter((name) => !(name in MIGRATIONS))
  if (unknown.length > 0) throw newerVersion(location, unknown)

  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => MIGRATIONS },
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
  })
  const { error, results = [] } = await migrator.migrateToLatest()
  if (error === undefined) return
  // Another process may have run a newer migration since the check above.
  const afterwards = (await executedMigrations(db)).filter((name) => !(name in MIGRATIONS))
  if (afterwards.length > 0) throw newerVersion(location, afterwards)
  const failed = results.find((result) => result.status === 'Error')?.migrationName
  throw new StoreOpenError(
    `the store at ${location} could not be migrated${failed ? ` (migration ${failed} failed)` : ''}: ${messageOf(error)}; it was rolled back and nothing was changed`,
    location,
    { cause: error }
  )
}

/** The names of the migrations the database has run (none if it is new). */
async function executedMigrations(db: AnyDb): Promise<string[]> {
  try {
    const rows = await db.selectFrom(MIGRATION_TABLE).select('name').execute()
    return rows.map((row: { name: string }) => row.name)
  } catch (error) {
    if (isMissingTable(error)) return []
    throw error
  }
}

function isMissingTable(error: unknown): boolean {
  // PostgreSQL: undefined_table. SQLite has no code of its own for it.
  return codeOf(error) === '42P01' || /no such table/.test(messageOf(error))
}

function newerVersion(location: string, unknown: string[]): StoreOpenError {
  return new StoreOpenError(
    `the store at ${location} was migrated by a newer version of qrvisor (it has run ${unknown.join(', ')}, which this version does not know); nothing was changed: run that version or a newer one, or restore a backup made before it`,
    location
  )
}
