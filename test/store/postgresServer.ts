/**
 * A PostgreSQL server for the store tests: `TEST_DATABASE_URL` when given, otherwise a throwaway
 * cluster in a temporary folder, on a free port of 127.0.0.1, from the server binaries under
 * /usr/lib/postgresql/N/bin (Debian's `postgresql` package; `.ci/run` installs it).
 *
 * As root, `initdb` and `postgres` run as the `postgres` user (PostgreSQL refuses root). The
 * cluster is started by a small shell wrapper that stops it and removes its folder when `stop()`
 * asks, and also when the test process is gone (a crash, a killed worker), so no server or folder
 * outlives the tests.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'

export interface PostgresServer {
  /** A URL of the server's maintenance database, for creating and dropping test databases. */
  adminUrl: string
  /** Creates an empty database; returns its URL. */
  createDatabase(): Promise<string>
  /** Drops a database made by `createDatabase` (closing its connections). */
  dropDatabase(url: string): Promise<void>
  /** Drops the databases still there and stops the cluster (if this started one). */
  stop(): Promise<void>
}

const WRAPPER = `
"$BIN/postgres" -D "$ROOT/data" -p "$PORT" -k "$ROOT" -c listen_addresses=127.0.0.1 \\
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off >"$ROOT/postgres.log" 2>&1 &
pg=$!
# The data is thrown away: stop at once (SIGQUIT, no checkpoint), then remove it.
finish() { kill -QUIT "$pg" 2>/dev/null; wait "$pg"; rm -rf "$ROOT"; exit 0; }
trap finish TERM INT HUP
while kill -0 "$pg" 2>/dev/null && [ -d "/proc/$WATCH" ]; do sleep 0.2 & wait $!; done
finish
`

let counter = 0

export async function startPostgres(): Promise<PostgresServer> {
  const given = process.env.TEST_DATABASE_URL
  const cluster = given ? undefined : await startCluster()
  const adminUrl = given ?? cluster!.url
  const created = new Set<string>()
  const drop = (name: string) =>
    withClient(adminUrl, (client) => client.query(`drop database if exists ${name} with (force)`))
  return {
    adminUrl,
    async createDatabase() {
      const name = `qrvisor_test_${process.pid}_${++counter}`
      await withClient(adminUrl, (client) => client.query(`create database ${name}`))
      created.add(name)
      const url = new URL(adminUrl)
      url.pathname = `/${name}`
      return url.toString()
    },
    async dropDatabase(url) {
      const name = new URL(url).pathname.slice(1)
      if (!created.delete(name)) return
      await drop(name)
    },
    async stop() {
      try {
        if (given) for (const name of created) await drop(name)
        created.clear()
      } finally {
        await cluster?.stop()
      }
    },
  }
}

async function startCluster(): Promise<{ url: string; stop(): Promise<void> }> {
  const bin = findServerBinaries()
  const root = mkdtempSync(join(tmpdir(), 'qrvisor-pg-'))
  const asRoot = process.getuid?.() === 0
  const runAs = (command: string, args: string[]) =>
    asRoot
      ? { command: 'runuser', args: ['-u', 'postgres', '--', command, ...args] }
      : { command, args }
  let wrapper: ChildProcess | undefined
  try {
    if (asRoot) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString())
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString())
      chownSync(root, uid, gid)
    }
    chmodSync(root, 0o700)
    const initdb = runAs(join(bin, 'initdb'), [
      '-D',
      join(root, 'data'),
      '-A',
      'trust',
      '-U',
      'postgres',
      '--no-sync',
      '-E',
      'UTF8',
      '--locale=C',
    ])
    execFileSync(initdb.command, initdb.args, { stdio: 'pipe' })
    const port = await freePort()
    const sh = runAs('/bin/sh', ['-c', WRAPPER])
    wrapper = spawn(sh.command, sh.args, {
      env: { ...process.env, BIN: bin, ROOT: root, PORT: String(port), WATCH: String(process.pid) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`
    await waitUntilReady(url, wrapper, root)
    const running = wrapper
    return {
      url,
      async stop() {
        if (running.exitCode === null && running.signalCode === null) {
          const exited = new Promise((resolve) => running.once('exit', resolve))
          running.kill('SIGTERM')
          await exited
        }
        rmSync(root, { recursive: true, force: true })
      },
    }
  } catch (error) {
    wrapper?.kill('SIGTERM')
    rmSync(root, { recursive: true, force: true })
    throw error
  }
}

function findServerBinaries(): string {
  const base = '/usr/lib/postgresql'
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((version) => existsSync(join(base, version, 'bin', 'postgres')))
        .sort((a, b) => Number(b) - Number(a))
    : []
  if (versions.length === 0) {
    throw new Error(
      'PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: install them (apt-get install postgresql) or set TEST_DATABASE_URL'
    )
  }
  return join(base, versions[0]!, 'bin')
}

async function waitUntilReady(url: string, wrapper: ChildProcess, root: string): Promise<void> {
  const deadline = Date.now() + 30_000
  let exited = false
  wrapper.once('exit', () => (exited = true))
  for (;;) {
    try {
      await withClient(url, (client) => client.query('select 1'))
      return
    } catch (error) {
      if (exited || Date.now() > deadline) {
        let log = ''
        try {
          log = execFileSync('cat', [join(root, 'postgres.log')]).toString()
        } catch {
          // The wrapper removed the folder.
        }
        throw new Error(`the test PostgreSQL server did not start: ${String(error)}\n${log}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
}

async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  await client.connect()
  try {
    return await use(client)
  } finally {
    await client.end()
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}
