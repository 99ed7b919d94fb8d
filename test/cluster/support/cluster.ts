/**
 * A cluster of qrvisor nodes for the multi-process tests: each node a child process of the
 * service from its sources (`node --import tsx src/main.ts`, simulated engine, port 0), all on one
 * throwaway PostgreSQL database and one shared DATA_DIR, with short leases; a node's database link
 * may go through a TCP proxy of its own, for the test to cut. The engines' ledger
 * (`SIM_LEDGER=true`) is checked continuously from the start (./ledger.ts): every wait of a
 * scenario fails at the first moment two engines of one campaign ran at once.
 *
 * Nothing outlives a test: `close()` kills every node's process group, closes the proxies and
 * sockets, drops the database and deletes the DATA_DIR.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { WebSocket } from 'ws'
import { signToken } from '../../../scripts/token.ts'
import { FAST_ENV, SECRET, TestSocket, type Json } from '../../support/edge.ts'
import {
  isRunning,
  listening,
  SOURCE_COMMAND,
  spawnService,
  stopServices,
  type Exit,
  type ServiceProcess,
} from '../../support/service.ts'
import type { PostgresServer } from '../../store/postgresServer.ts'
import { LedgerWatch } from './ledger.ts'
import { startTcpProxy, type TcpProxy } from './tcpProxy.ts'

export const LEASE_TTL_MS = 4_000
export const KILL_TIMEOUT_MS = 100
/** How long a node woken from SIGSTOP may still run an engine of a campaign taken over. */
export const GRACE_MS = KILL_TIMEOUT_MS + 1_000
/** How long a new owner waits before launching when it took over an expired lease. */
export const TAKEOVER_WAIT_MS = KILL_TIMEOUT_MS + 2_000
export const CLUSTER_SECRET = 'a-cluster-secret-of-the-tests-0123456789'
export const USER = 'alice'

/**
 * The brief's environment: FAST_ENV's port, host and QR delay, but the service's own init and
 * authentication timeouts (30 s, 120 s): a restore on a node that took over an expired lease waits
 * `KILL_TIMEOUT_MS + 2 s` before its engine launches, longer than FAST_ENV's 2 s init timeout.
 */
const NODE_ENV: Record<string, string> = {
  ...FAST_ENV,
  INIT_TIMEOUT_MS: '30000',
  AUTH_TIMEOUT_MS: '120000',
  WA_ENGINE: 'simulated',
  LOG_LEVEL: 'info',
  LEASE_TTL_MS: String(LEASE_TTL_MS),
  KILL_TIMEOUT_MS: String(KILL_TIMEOUT_MS),
  DESTROY_TIMEOUT_MS: '300',
  // Long enough that no session waiting for a scan times out while a test looks at it.
  SCAN_TIMEOUT_MS: '60000',
  CLUSTER_SECRET,
  SIM_LEDGER: 'true',
  JWT_SECRET: SECRET,
}

export interface ClusterNode {
  id: string
  url: string
  /** The node process (its process group has the same id). */
  pid: number
  service: ServiceProcess
  /** The proxy its DATABASE_URL goes through, when started `viaProxy`. */
  proxy?: TcpProxy
  /** Overrides of its environment, kept for a restart. */
  env: Record<string, string>
}

export interface Answer {
  status: number
  body: Json
}

export class TestCluster {
  readonly nodes = new Map<string, ClusterNode>()
  readonly ledger: LedgerWatch
  private readonly sockets = new Set<TestSocket>()
  private readonly proxies = new Set<TcpProxy>()
  private readonly cleanups: Array<() => void | Promise<void>> = []
  /** Every node process started, restarts too, in order: their logs, for a failure's report. */
  private readonly incarnations: Array<{ id: string; service: ServiceProcess }> = []
  private token = ''
  /** The test user's token, for a request the helpers do not make. */
  get bearer(): string {
    return this.token
  }

  private constructor(
    private readonly postgres: PostgresServer,
    readonly databaseUrl: string,
    readonly dataDir: string
  ) {
    this.ledger = new LedgerWatch(dataDir, GRACE_MS)
  }

  /** A new database and DATA_DIR; the ledger watch runs from now on. Start nodes with `start`. */
  static async create(postgres: PostgresServer): Promise<TestCluster> {
    const databaseUrl = await postgres.createDatabase()
    const dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-cluster-'))
    const cluster = new TestCluster(postgres, databaseUrl, dataDir)
    cluster.token = await signToken({ secret: SECRET, sub: USER })
    cluster.ledger.start()
    return cluster
  }

  /** Starts node `id` (`node-a`…) and waits until it listens. */
  async start(
    id: string,
    { viaProxy = false, env = {} }: { viaProxy?: boolean; env?: Record<string, string> } = {}
  ): Promise<ClusterNode> {
    let databaseUrl = this.databaseUrl
    let proxy: TcpProxy | undefined
    if (viaProxy) {
      const target = new URL(this.databaseUrl)
      proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port) })
      this.proxies.add(proxy)
      target.port = String(proxy.port)
      databaseUrl = target.toString()
    }
    const service = spawnService(SOURCE_COMMAND, {
      ...NODE_ENV,
      DATA_DIR: this.dataDir,
      DATABASE_URL: databaseUrl,
      NODE_ID: id,
      ...env,
    })
    // From its sources (tsx compiles at start): slow on a busy machine.
    const { url, pid } = await listening(service, 60_000).catch((error: unknown) => {
      throw new Error(`${id} did not start: ${String(error)}\n${logTail(service)}`)
    })
    const node: ClusterNode = { id, url, pid, service, env, ...(proxy ? { proxy } : {}) }
    this.nodes.set(id, node)
    this.incarnations.push({ id, service })
    return node
  }

  /**
   * Starts a process as node `id` that must not join the cluster: resolves once it has exited
   * (within `timeoutMs`), with its exit and what it wrote to standard error.
   */
  async startRefused(
    id: string,
    {
      timeoutMs = 60_000,
      env = {},
      whileJoining,
    }: {
      timeoutMs?: number
      env?: Record<string, string>
      /** Called once it listens and waits to join (`url`: where it listens). */
      whileJoining?: (url: string) => Promise<void>
    } = {}
  ): Promise<{ exit: Exit; stderr: string }> {
    const port = await freePort()
    const service = spawnService(SOURCE_COMMAND, {
      ...NODE_ENV,
      DATA_DIR: this.dataDir,
      DATABASE_URL: this.databaseUrl,
      NODE_ID: id,
      PORT: String(port),
      ...env,
    })
    this.incarnations.push({ id, service })
    if (whileJoining) {
      await this.until(
        () =>
          service.lines.some((line) => line.component === 'cluster' && line.level === 40)
            ? true
            : undefined,
        `${id} waiting to join`,
        timeoutMs
      )
      await whileJoining(`http://127.0.0.1:${port}`)
    }
    let timer: NodeJS.Timeout | undefined
    const exit = await Promise.race([
      service.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`a second ${id} still runs after ${timeoutMs} ms`)),
          timeoutMs
        )
      }),
    ]).finally(() => clearTimeout(timer))
    return { exit, stderr: service.stderr.join('\n') }
  }

  /** Starts the nodes at once (on a busy machine each takes seconds). */
  startAll(
    ids: string[],
    options: { viaProxy?: string[]; env?: Record<string, string> } = {}
  ): Promise<ClusterNode[]> {
    return Promise.all(
      ids.map((id) =>
        this.start(id, {
          viaProxy: options.viaProxy?.includes(id) ?? false,
          env: options.env ?? {},
        })
      )
    )
  }

  node(id: string): ClusterNode {
    const node = this.nodes.get(id)
    if (node === undefined) throw new Error(`no node ${id}`)
    return node
  }

  /** `kill -9` of the node's whole process group, as a power loss; resolves once it is gone. */
  async kill(id: string): Promise<void> {
    const node = this.node(id)
    process.kill(-node.pid, 'SIGKILL')
    this.ledger.killedAt(node.pid)
    await node.service.exited
    this.nodes.delete(id)
  }

  /** SIGSTOP of the node's process group: a frozen container (its engines are frozen with it). */
  freeze(id: string): void {
    const node = this.node(id)
    process.kill(-node.pid, 'SIGSTOP')
    this.ledger.frozen(node.pid)
  }

  /** SIGCONT of the node's process group. */
  thaw(id: string): void {
    const node = this.node(id)
    // Told before the signal: the woken node's grace is counted from no later than its waking.
    this.ledger.thawed(node.pid)
    process.kill(-node.pid, 'SIGCONT')
  }

  /** SIGTERM (a drain), and its exit. */
  async stop(id: string, timeoutMs = 30_000): Promise<Exit> {
    const node = this.node(id)
    node.service.child.kill('SIGTERM')
    let timer: NodeJS.Timeout | undefined
    const exit = await Promise.race([
      node.service.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `${id} did not exit within ${timeoutMs} ms of SIGTERM; every node's log is in ${this.keepLogs()}; its log's tail:\n${logTail(node.service, 30)}`
              )
            ),
          timeoutMs
        )
      }),
    ]).finally(() => clearTimeout(timer))
    if (isRunning(node.pid)) throw new Error(`${id} (pid ${node.pid}) still runs after its exit`)
    this.nodes.delete(id)
    return exit
  }

  /** Starts the node again with the same NODE_ID (and proxy setting), after `stop` or `kill`. */
  restart(id: string, previous: ClusterNode): Promise<ClusterNode> {
    return this.start(id, { viaProxy: previous.proxy !== undefined, env: previous.env })
  }

  /** A request to a node as the test's user; JSON both ways; aborted after `timeoutMs`. */
  async call(
    id: string,
    method: string,
    path: string,
    body?: unknown,
    { timeoutMs = 60_000 }: { timeoutMs?: number } = {}
  ): Promise<Answer> {
    const response = await fetch(`${this.node(id).url}${path}`, {
      method,
      signal: AbortSignal.timeout(timeoutMs),
      headers: {
        Authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await response.text()
    let parsed: Json = text
    try {
      parsed = text ? JSON.parse(text) : null
    } catch {
      // Not JSON: kept as text for the message of a failing assertion.
    }
    return { status: response.status, body: parsed }
  }

  /** Starts (or joins) the campaign's session through node `id` (`POST …/qr-code`). */
  requestSession(id: string, campaignId: string): Promise<Answer> {
    return this.call(id, 'POST', `/api/campaigns/${campaignId}/qr-code`)
  }

  async connection(id: string, campaignId: string, timeoutMs?: number): Promise<Json> {
    const path = `/api/campaigns/${campaignId}/connection`
    const answer = await this.call(id, 'GET', path, undefined, { timeoutMs })
    if (answer.status !== 200) {
      throw new Error(`connection of ${campaignId} via ${id}: ${answer.status} ${str(answer.body)}`)
    }
    return answer.body
  }

  scan(id: string, campaignId: string): Promise<Answer> {
    return this.call(id, 'POST', `/api/simulator/campaigns/${campaignId}/scan`)
  }

  /** Every campaign of the user, through node `id` (all pages). */
  async campaigns(id: string): Promise<Json[]> {
    const all: Json[] = []
    let cursor: string | null = null
    do {
      const query: string = cursor === null ? '' : `&cursor=${cursor}`
      const answer = await this.call(id, 'GET', `/api/campaigns?limit=1000${query}`)
      if (answer.status !== 200) throw new Error(`campaigns via ${id}: ${answer.status}`)
      all.push(...(answer.body.campaigns as Json[]))
      cursor = answer.body.nextCursor as string | null
    } while (cursor !== null)
    return all
  }

  /**
   * Polls (every `intervalMs`, bounded) until `check` answers something. Fails at once when the
   * ledger invariant breaks meanwhile.
   */
  async until<T>(
    check: () => Promise<T | undefined> | T | undefined,
    what: string,
    timeoutMs = 20_000,
    intervalMs = 50
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs
    let last: unknown
    for (;;) {
      this.ledger.throwIfViolated()
      try {
        const found = await check()
        if (found !== undefined) return found
      } catch (error) {
        // A node answering badly during a failover is retried; the last error is reported.
        last = error
      }
      if (Date.now() > deadline) {
        throw new Error(
          `${what} did not happen within ${Math.round(timeoutMs)} ms (last error: ${String(last)})`
        )
      }
      await Promise.race([new Promise((r) => setTimeout(r, intervalMs)), this.ledger.failure])
    }
  }

  /** Polls the campaign's connection through node `id` until `accept` takes it. */
  connectionWhen(
    id: string,
    campaignId: string,
    accept: (view: Json) => boolean,
    what: string,
    timeoutMs = 20_000
  ): Promise<Json> {
    let last: Json
    return this.until(
      async () => {
        last = await this.connection(id, campaignId)
        return accept(last) ? last : undefined
      },
      `${campaignId} via ${id}: ${what}`,
      timeoutMs
    ).catch((error: Error) => {
      throw new Error(`${error.message}; last answer: ${str(last)}`)
    })
  }

  /**
   * Starts the campaign through node `start` and links it as a phone does: QR, scan (through
   * node `scan`), `ready`. Resolves with the ready connection (its `node` runs it).
   */
  async link(campaignId: string, start: string, scan = start): Promise<Json> {
    const started = await this.requestSession(start, campaignId)
    if (started.status !== 202) {
      throw new Error(`start of ${campaignId} via ${start}: ${started.status} ${str(started.body)}`)
    }
    await this.connectionWhen(start, campaignId, (v) => v.status === 'awaitingScan', 'the QR')
    const scanned = await this.scan(scan, campaignId)
    if (scanned.status !== 200) {
      throw new Error(`scan of ${campaignId} via ${scan}: ${scanned.status} ${str(scanned.body)}`)
    }
    return this.connectionWhen(start, campaignId, (v) => v.status === 'ready', 'ready')
  }

  /**
   * Polls the campaigns' connections through node `via` until each is `ready` with another
   * session than in `before` (a new one, after a failover), on a node other than `notOn`.
   * Resolves with the time each was first seen so, from `since`; on a timeout, the error names
   * the campaigns still waiting with their last answer, and the nodes' warnings.
   */
  async readyElsewhere({
    campaigns,
    before,
    via,
    notOn,
    since,
    timeoutMs,
  }: {
    campaigns: string[]
    before: ReadonlyMap<string, string>
    via: string
    notOn: string
    since: number
    timeoutMs: number
  }): Promise<Map<string, { afterMs: number; view: Json }>> {
    const done = new Map<string, { afterMs: number; view: Json }>()
    const last = new Map<string, Json>()
    try {
      await this.until(
        async () => {
          const waiting = campaigns.filter((campaignId) => !done.has(campaignId))
          await Promise.all(
            waiting.map(async (campaignId) => {
              let view: Json
              try {
                // Bounded: a request forwarded to a node that cannot answer must not hold the
                // measurement (scenarios check how such requests are answered on their own).
                view = await this.connection(via, campaignId, 2_000)
              } catch (error) {
                last.set(campaignId, { status: `no answer (${String(error)})` })
                return
              }
              last.set(campaignId, view)
              const moved = view.sessionId !== before.get(campaignId) && view.node !== notOn
              if (view.status === 'ready' && moved) {
                done.set(campaignId, { afterMs: Date.now() - since, view })
              }
            })
          )
          return done.size === campaigns.length ? true : undefined
        },
        `${campaigns.length} campaigns ready off ${notOn}`,
        timeoutMs,
        100
      )
    } catch (error) {
      const waiting = campaigns
        .filter((campaignId) => !done.has(campaignId))
        .map((campaignId) => {
          const view = last.get(campaignId)
          return view === undefined
            ? `${campaignId}: no answer`
            : `${campaignId}: ${view.status} ${view.reason ?? ''} on ${view.node} (session ${view.sessionId})`
        })
      throw new Error(
        `${(error as Error).message}\n${done.size} ready; still waiting:\n` +
          `${waiting.join('\n')}\nnodes' warnings:\n${this.warnings()}`
      )
    }
    return done
  }

  /** A WebSocket to `/ws/campaigns` of node `id`, with the user's token. */
  async socket(id: string): Promise<TestSocket> {
    const ws = new WebSocket(
      `${this.node(id).url.replace('http', 'ws')}/ws/campaigns?token=${this.token}`
    )
    const socket = new TestSocket(ws)
    this.sockets.add(socket)
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    return socket
  }

  /** The campaigns the store has linked and wanted running (what a failover restores). */
  async storedLinked(): Promise<string[]> {
    const client = new pg.Client({ connectionString: this.databaseUrl })
    await client.connect()
    try {
      const rows = await client.query<{ campaign_id: string }>(
        `select campaign_id from campaigns where linked = 1 and wanted = 'running'`
      )
      return rows.rows.map((row) => row.campaign_id).sort()
    } finally {
      await client.end()
    }
  }

  /**
   * Waits until the store has every campaign linked: the write-behind store acknowledges `ready`
   * before it is written, and a failover restores only what the store says is linked.
   */
  async untilStoredLinked(campaigns: string[]): Promise<void> {
    await this.until(
      async () => {
        const stored = new Set(await this.storedLinked())
        return campaigns.every((campaignId) => stored.has(campaignId)) ? true : undefined
      },
      `the store to have ${campaigns.length} campaigns linked`,
      10_000,
      100
    )
  }

  /** The campaign leases as the database has them, with its clock's now. */
  async leases(): Promise<{
    now: number
    leases: Array<{ campaignId: string; owner: string; epoch: number; expiresAt: number }>
  }> {
    const client = new pg.Client({ connectionString: this.databaseUrl })
    await client.connect()
    try {
      const now = await client.query<{ now: string }>(
        `select (extract(epoch from clock_timestamp()) * 1000)::bigint as now`
      )
      const rows = await client.query<{
        campaign_id: string
        owner_node: string
        epoch: string
        expires_at: string
      }>('select campaign_id, owner_node, epoch, expires_at from campaign_leases')
      return {
        now: Number(now.rows[0]!.now),
        leases: rows.rows.map((row) => ({
          campaignId: row.campaign_id,
          owner: row.owner_node,
          epoch: Number(row.epoch),
          expiresAt: Number(row.expires_at),
        })),
      }
    } finally {
      await client.end()
    }
  }

  /**
   * Runs `cleanup` at `close()`, once every node is gone and before the DATA_DIR is deleted (e.g.
   * to kill browsers, which run in process groups of their own).
   */
  onClose(cleanup: () => void | Promise<void>): void {
    this.cleanups.push(cleanup)
  }

  /** Each node's last warnings and errors (level ≥ 40), for a failing assertion's message. */
  warnings(lines = 10): string {
    return [...this.nodes.values()]
      .map((node) => {
        const warned = node.service.lines.filter(
          (line) => typeof line.level === 'number' && line.level >= 40
        )
        const last = warned.slice(-lines).map((line) => str(line))
        return `--- ${node.id}\n${last.join('\n')}`
      })
      .join('\n')
  }

  /** The last lines of every node's log (for a failing assertion's message). */
  logs(lines = 15): string {
    return [...this.nodes.values()]
      .map((node) => `--- ${node.id} (pid ${node.pid})\n${logTail(node.service, lines)}`)
      .join('\n')
  }

  /**
   * Checks the ledger a last time, then kills every node and removes everything; throws the
   * ledger's first violation, if any, once everything is gone.
   */
  /**
   * Writes the whole log of every node process of this cluster so far (restarted ones too, one
   * file per process, numbered in start order) to a new directory under the system's temporary
   * one, for a failure that only the nodes' own accounts can explain. Returns the directory.
   */
  keepLogs(): string {
    const dir = mkdtempSync(join(tmpdir(), 'qrvisor-cluster-logs-'))
    this.incarnations.forEach(({ id, service }, index) => {
      const name = `${String(index + 1).padStart(2, '0')}-${id}-${service.child.pid ?? 'unknown'}`
      writeFileSync(join(dir, `${name}.log`), service.lines.map((line) => str(line)).join('\n'))
      if (service.stderr.length > 0) {
        writeFileSync(join(dir, `${name}.stderr`), service.stderr.join('\n'))
      }
    })
    return dir
  }

  async close(): Promise<void> {
    // To read what the nodes said in a run that passed: TEST_KEEP_CLUSTER_LOGS=1.
    if (process.env.TEST_KEEP_CLUSTER_LOGS) console.log(`[cluster] node logs: ${this.keepLogs()}`)
    let violation: unknown
    try {
      this.ledger.stop()
    } catch (error) {
      violation = error
    }
    for (const socket of this.sockets) socket.ws.terminate()
    this.sockets.clear()
    const pids = await stopServices()
    const survivors = pids.filter(isRunning)
    for (const cleanup of this.cleanups.splice(0)) await cleanup()
    await Promise.all([...this.proxies].map((proxy) => proxy.close()))
    this.proxies.clear()
    this.nodes.clear()
    await this.postgres.dropDatabase(this.databaseUrl)
    rmSync(this.dataDir, { recursive: true, force: true })
    if (survivors.length > 0) throw new Error(`node processes outlived the test: ${survivors}`)
    if (violation !== undefined) throw violation
  }
}

export function str(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value)
}

function logTail(service: ServiceProcess, lines = 15): string {
  const out = service.lines.slice(-lines).map((line) => str(line))
  const err = service.stderr.slice(-lines)
  return [...out, ...(err.length > 0 ? ['stderr:', ...err] : [])].join('\n')
}

/** p-th percentile (nearest rank) of `values`. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN
}

/** A port nothing listens on now (the kernel's pick, released at once). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}
