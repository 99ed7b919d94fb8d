/**
 * One service per PostgreSQL database until the cluster runs on leases: a second service on the
 * same database refuses to start, saying why, and starts once the first has stopped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NodeLockError } from '../../src/cluster/singleNode.ts'
import { closeAll, startTestServer } from '../support/edge.ts'
import { startPostgres, type PostgresServer } from '../store/postgresServer.ts'

let server: PostgresServer
const CLUSTER_SECRET = 'single-node-test-cluster-secret-32+'

beforeAll(async () => {
  server = await startPostgres()
}, 60_000)

afterAll(async () => {
  await closeAll()
  await server?.stop()
}, 60_000)

describe('one service per PostgreSQL database', () => {
  it('refuses a second service on the same database, and lets one start once the first stopped', async () => {
    const databaseUrl = await server.createDatabase()
    const first = await startTestServer({ DATABASE_URL: databaseUrl, CLUSTER_SECRET })
    const refused = await startTestServer({ DATABASE_URL: databaseUrl, CLUSTER_SECRET }).then(
      () => undefined,
      (error: unknown) => error
    )
    expect(refused).toBeInstanceOf(NodeLockError)
    expect((refused as Error).message).toMatch(
      /another qrvisor service uses the database postgres:\/\//
    )
    expect((refused as Error).message).not.toMatch(/:[^@/]*@/) // no password
    // The first is undisturbed.
    expect((await fetch(`${first.url}/readyz`)).status).toBe(200)

    await first.close()
    const next = await startTestServer({ DATABASE_URL: databaseUrl, CLUSTER_SECRET })
    expect((await fetch(`${next.url}/readyz`)).status).toBe(200)
    await next.close()
    // A service on another database is not concerned.
    const other = await startTestServer({
      DATABASE_URL: await server.createDatabase(),
      CLUSTER_SECRET,
    })
    expect((await fetch(`${other.url}/readyz`)).status).toBe(200)
  }, 60_000)
})
