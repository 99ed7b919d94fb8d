/**
 * One node per PostgreSQL database, until the cluster runs on leases: two services on one database
 * would each restore the same linked campaigns, and two browsers would drive one WhatsApp login.
 * The SQLite store refuses a second process with its file lock; this is PostgreSQL's equivalent,
 * a session-level advisory lock held on a connection of its own for the life of the process (the
 * database releases it when the connection goes, a crash included).
 *
 * @module
 */
import pg from 'pg'

/** The advisory lock's key: "qrvisor" as a number, so other applications' keys do not collide. */
const LOCK_KEY = 0x717276_69736f72n

export class NodeLockError extends Error {
  override name = 'NodeLockError'
}

export interface NodeLock {
  release(): Promise<void>
}

/**
 * Takes the database's qrvisor node lock, or rejects with a `NodeLockError` saying that another
 * node holds it. `location` names the database in messages (never with its password).
 */
export async function lockSingleNode(url: string, location: string): Promise<NodeLock> {
  const client = new pg.Client({ connectionString: url, application_name: 'qrvisor-node-lock' })
  // A lost connection loses the lock; the store's own connections report the outage.
  client.on('error', () => undefined)
  await client.connect()
  let locked = false
  try {
    const { rows } = await client.query<{ locked: boolean }>(
      'select pg_try_advisory_lock($1::bigint) as locked',
      [LOCK_KEY.toString()]
    )
    locked = rows[0]?.locked === true
  } finally {
    if (!locked) await client.end().catch(() => undefined)
  }
  if (!locked) {
    throw new NodeLockError(
      `another qrvisor service uses the database ${location}: one service per database for now ` +
        '(several would each restore the same linked campaigns and run two browsers on one ' +
        'WhatsApp login); stop the other one, or give this one a database of its own'
    )
  }
  return {
    async release() {
      await client.end().catch(() => undefined)
    },
  }
}
