/**
 * Webhook delivery over PostgreSQL (a throwaway cluster, or `TEST_DATABASE_URL`); the suite is in
 * deliveryContract.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'
import { startPostgres, type PostgresServer } from '../store/postgresServer.ts'
import { describeDelivery } from './deliveryContract.ts'

let server: PostgresServer

beforeAll(async () => {
  server = await startPostgres()
}, 60_000)

afterAll(async () => {
  await server?.stop()
}, 60_000)

describeDelivery('PostgreSQL', {
  create: async () => ({
    dataDir: mkdtempSync(join(tmpdir(), 'qrvisor-hooks-')),
    databaseUrl: await server.createDatabase(),
  }),
  async destroy({ dataDir, databaseUrl }) {
    rmSync(dataDir, { recursive: true, force: true })
    await server.dropDatabase(databaseUrl!)
  },
})
