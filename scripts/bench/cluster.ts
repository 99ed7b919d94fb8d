/**
 * The cluster's figures (issue 12): three node processes of the service from its sources on one
 * throwaway PostgreSQL and one shared DATA_DIR, the simulated engine, short leases
 * (`LEASE_TTL_MS=4000`, `KILL_TIMEOUT_MS=100`): the cluster tests' harness
 * (test/cluster/support/cluster.ts), its engines' ledger checked throughout.
 *
 * 1. Failover: 20 campaigns linked on node A, `kill -9` of A; for each, the time from the kill until
 *    `GET …/connection` on a survivor (polled every 50 ms) says `ready` on another node, beside
 *    `LEASE_TTL_MS` and the bound TTL + KILL_TIMEOUT_MS + 2 s + one scan interval (TTL/3).
 * 2. QR delivery across nodes: 200 sessions started on A (one every 10 ms), each watched by a
 *    subscriber on A and one on B (sockets of this process): start request → `qr_code` on each,
 *    and B's arrival minus A's for the same QR. Target: cross-node p99 ≤ 2 × same-node p99 + 10 ms.
 * 3. `GET …/connection` throughput (autocannon, 32 connections, alternating 2 s slices) against the
 *    node that runs the campaign and against one that forwards to it. Target: ≥ 50 %.
 * 4. Rolling restart: 30 campaigns linked over 3 nodes; SIGTERM a node, wait for its exit, start it
 *    again (same NODE_ID), next node; each campaign's connection polled every 100 ms through a live
 *    node: its longest time not `ready`, p50 and max, beside the kill -9 failover of the same run.
 *
 *   node --import tsx scripts/bench/cluster.ts [--default-ttl]
 *
 * `--default-ttl` (`BENCH_CLUSTER_DEFAULT_TTL=1` in `npm run bench`) adds the failover with the
 * service's own `LEASE_TTL_MS=15000` and `KILL_TIMEOUT_MS=5000` (about 40 s more). Nothing outlives
 * the run: the nodes are killed, PostgreSQL stopped, the DATA_DIRs removed (also on SIGINT).
 *
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import autocannon, { type Result as AutocannonResult } from 'autocannon'
import type { WebSocket } from 'ws'
import { SECRET } from '../../test/support/edge.ts'
import { killServices } from '../../test/support/service.ts'
import { startPostgres, type PostgresServer } from '../../test/store/postgresServer.ts'
import {
  KILL_TIMEOUT_MS,
  LEASE_TTL_MS,
  TestCluster,
  USER,
  type ClusterNode,
} from '../../test/cluster/support/cluster.ts'
import { signToken } from '../token.ts'
import { percentile } from './support.ts'

const IDS = ['node-a', 'node-b', 'node-c']
const FAILOVER_CAMPAIGNS = 20
const QR_SESSIONS = 200
const QR_START_EVERY_MS = 10
/** The service's limit of subscriptions per socket. */
const SUBSCRIPTIONS_PER_SOCKET = 32
const ROLLING_CAMPAIGNS = 30
const HTTP_CONNECTIONS = 32
const HTTP_SLICE_S = 2
const HTTP_ROUNDS = 3

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const ms = (x: number) => `${Math.round(x).toLocaleString('en')} ms`
const load = () => loadavg()[0]!.toFixed(1)

function stamp(): string {
  return new Date().toISOString().slice(0, 16).replace('T', ' ')
}

/** Runs `task` on every item, `concurrency` at a time. */
async function eachLimited<T>(
  items: T[],
  concurrency: number,
  task: (item: T, index: number) => Promise<void>
): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const index = next++
      await task(items[index]!, index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
}

const names = (prefix: string, count: number) =>
  Array.from({ length: count }, (_, index) => `${prefix}-${index}`)

/** What went wrong in answers, counted by message (for the report, not the figures). */
class Tally {
  private readonly counts = new Map<string, number>()
  add(what: string): void {
    const key = what.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, '…').slice(0, 160)
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1)
  }
  get total(): number {
    return [...this.counts.values()].reduce((a, b) => a + b, 0)
  }
  toString(): string {
    return [...this.counts].map(([what, n]) => `${n} × ${what}`).join('; ')
  }
}

/** `BENCH_CLUSTER_LOGS=<folder>`: every node's log of every part is written there. */
const logsDir = process.env.BENCH_CLUSTER_LOGS

function dumpLogs(part: string, nodes: Iterable<ClusterNode>): void {
  if (!logsDir) return
  mkdirSync(logsDir, { recursive: true })
  const seen = new Map<string, number>()
  for (const node of nodes) {
    const n = (seen.get(node.id) ?? 0) + 1
    seen.set(node.id, n)
    const lines = [
      ...node.service.lines.map((line) => JSON.stringify(line)),
      ...node.service.stderr,
    ]
    writeFileSync(join(logsDir, `${part}-${node.id}-${n}.log`), `${lines.join('\n')}\n`)
  }
}

/** Each node's warnings and errors (level ≥ 40) to standard error, counted on standard output. */
function reportWarnings(c: TestCluster, part: string, nodes: Iterable<ClusterNode>): void {
  const counts: string[] = []
  for (const node of nodes) {
    const warned = node.service.lines.filter(
      (line) => typeof line.level === 'number' && line.level >= 40
    )
    counts.push(`${node.id} ${warned.length}`)
    for (const line of warned.slice(-20)) {
      console.error(`[${part}] ${node.id}: ${JSON.stringify(line)}`)
    }
  }
  console.log(`Node warnings and errors logged: ${counts.join(', ')}.`)
  c.ledger.throwIfViolated()
}

interface FailoverFigures {
  ttlMs: number
  killTimeoutMs: number
  boundMs: number
  times: number[]
  spread: Record<string, number>
  failedPolls: Tally
}

/**
 * 20 campaigns linked on node-a, `kill -9` of node-a, each campaign's connection polled every
 * 50 ms through a survivor (node-b or node-c, alternately by campaign) until it is `ready` in a new
 * session on another node.
 */
async function failover(
  postgres: PostgresServer,
  ttlMs: number,
  killTimeoutMs: number
): Promise<FailoverFigures> {
  const c = await TestCluster.create(postgres)
  const started: ClusterNode[] = []
  try {
    const env = { LEASE_TTL_MS: String(ttlMs), KILL_TIMEOUT_MS: String(killTimeoutMs) }
    started.push(...(await Promise.all(IDS.map((id) => c.start(id, { env })))))
    const linked = names('failover', FAILOVER_CAMPAIGNS)
    const before = new Map<string, string>()
    await eachLimited(linked, 5, async (campaignId) => {
      const view = await c.link(campaignId, 'node-a')
      if (view.node !== 'node-a') throw new Error(`${campaignId} runs on ${view.node}, not node-a`)
      before.set(campaignId, view.sessionId as string)
    })
    await c.untilStoredLinked(linked)
    const boundMs = ttlMs + killTimeoutMs + 2_000 + ttlMs / 3
    const limitMs = 2 * boundMs + 10_000
    const survivors = [...c.nodes.values()].filter((node) => node.id !== 'node-a')
    const killedAt = performance.now()
    const killed = c.kill('node-a')
    const failedPolls = new Tally()
    const times: number[] = []
    const spread: Record<string, number> = {}
    let gaveUp = false
    await Promise.all(
      linked.map(async (campaignId, index) => {
        const via = survivors[index % survivors.length]!
        while (!gaveUp) {
          c.ledger.throwIfViolated()
          const polledAt = performance.now()
          if (polledAt - killedAt > limitMs) {
            gaveUp = true
            throw new Error(`${campaignId} not ready elsewhere within ${ms(limitMs)}`)
          }
          try {
            const view = await c.connection(via.id, campaignId, 2_000)
            const moved = view.node !== 'node-a' && view.sessionId !== before.get(campaignId)
            if (view.status === 'ready' && moved) {
              times.push(performance.now() - killedAt)
              spread[view.node as string] = (spread[view.node as string] ?? 0) + 1
              return
            }
          } catch (error) {
            failedPolls.add(`via ${via.id}: ${String(error)}`)
          }
          await sleep(Math.max(0, polledAt + 50 - performance.now()))
        }
      })
    )
    await killed
    reportWarnings(c, `failover ${ttlMs}`, started)
    return { ttlMs, killTimeoutMs, boundMs, times, spread, failedPolls }
  } finally {
    dumpLogs(`failover-${ttlMs}`, started)
    await c.close()
  }
}

function printFailover(f: FailoverFigures): void {
  const p = (q: number) => percentile(f.times, q)
  console.log(
    `| ${f.ttlMs.toLocaleString('en')} ms / ${f.killTimeoutMs.toLocaleString('en')} ms | ${ms(p(50))} | ${ms(p(99))} | ${ms(Math.max(...f.times))} | ${ms(f.ttlMs)} | ${ms(f.boundMs)} | ${Math.max(...f.times) <= f.boundMs ? 'met' : 'MISSED'} | ${JSON.stringify(f.spread)} | ${f.failedPolls.total} |`
  )
}

/** A socket to `/ws/campaigns` of a node, with each message's arrival time. */
async function timedSocket(
  c: TestCluster,
  id: string,
  onMessage: (message: Record<string, unknown>, at: number) => void
): Promise<WebSocket> {
  const socket = await c.socket(id)
  socket.ws.on('message', (data) => {
    onMessage(JSON.parse(data.toString()) as Record<string, unknown>, performance.now())
  })
  return socket.ws
}

/** Sends a ping and waits for its pong: every message sent before it has been handled. */
function roundTrip(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no pong within 10 s')), 10_000)
    const onMessage = (data: unknown) => {
      if ((JSON.parse(String(data)) as { type: string }).type !== 'pong') return
      clearTimeout(timer)
      ws.off('message', onMessage)
      resolve()
    }
    ws.on('message', onMessage)
    ws.send(JSON.stringify({ type: 'ping' }))
  })
}

interface QrFigures {
  sameNode: number[]
  crossNode: number[]
  /** B's arrival minus A's, for the same QR. */
  difference: number[]
  /** Arrival minus the QR message's `at` stamp (the engine event on node A), on each side. */
  sameNodeFromAt: number[]
  crossNodeFromAt: number[]
  runOn: Record<string, number>
  /** Each session's status (and reason) once every QR arrived: all should be `awaitingScan`. */
  outcomes: Record<string, number>
}

/** 200 sessions started on node-a, each watched from node-a and from node-b. */
async function qrDelivery(c: TestCluster): Promise<QrFigures> {
  const campaigns = names('qr', QR_SESSIONS)
  const arrivals = { 'node-a': new Map<string, number>(), 'node-b': new Map<string, number>() }
  const fromAt = { 'node-a': [] as number[], 'node-b': [] as number[] }
  const sockets: WebSocket[] = []
  for (const id of ['node-a', 'node-b'] as const) {
    for (let first = 0; first < campaigns.length; first += SUBSCRIPTIONS_PER_SOCKET) {
      const ws = await timedSocket(c, id, (message, at) => {
        if (message.type !== 'qr_code') return
        const campaignId = message.campaignId as string
        if (arrivals[id].has(campaignId)) return
        arrivals[id].set(campaignId, at)
        fromAt[id].push(Date.now() - Date.parse(message.at as string))
      })
      for (const campaignId of campaigns.slice(first, first + SUBSCRIPTIONS_PER_SOCKET)) {
        ws.send(JSON.stringify({ type: 'subscribe', campaignId }))
      }
      await roundTrip(ws)
      sockets.push(ws)
    }
  }
  const startedAt = new Map<string, number>()
  const starts: Array<Promise<void>> = []
  for (const campaignId of campaigns) {
    startedAt.set(campaignId, performance.now())
    starts.push(
      c.requestSession('node-a', campaignId).then((answer) => {
        if (answer.status !== 202) throw new Error(`start of ${campaignId}: ${answer.status}`)
      })
    )
    await sleep(QR_START_EVERY_MS)
  }
  await Promise.all(starts)
  const deadline = Date.now() + 30_000
  while (arrivals['node-a'].size < QR_SESSIONS || arrivals['node-b'].size < QR_SESSIONS) {
    if (Date.now() > deadline) {
      throw new Error(
        `QRs within 30 s: ${arrivals['node-a'].size} on node-a, ${arrivals['node-b'].size} on node-b of ${QR_SESSIONS}`
      )
    }
    await sleep(20)
  }
  for (const ws of sockets) ws.terminate()
  const runOn: Record<string, number> = {}
  const outcomes: Record<string, number> = {}
  await eachLimited(campaigns, 10, async (campaignId) => {
    const view = await c.connection('node-a', campaignId)
    runOn[view.node as string] = (runOn[view.node as string] ?? 0) + 1
    const outcome = view.reason ? `${view.status} ${view.reason}` : (view.status as string)
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
  })
  const latency = (id: 'node-a' | 'node-b') =>
    campaigns.map((campaignId) => arrivals[id].get(campaignId)! - startedAt.get(campaignId)!)
  return {
    sameNode: latency('node-a'),
    crossNode: latency('node-b'),
    difference: campaigns.map(
      (campaignId) => arrivals['node-b'].get(campaignId)! - arrivals['node-a'].get(campaignId)!
    ),
    sameNodeFromAt: fromAt['node-a'],
    crossNodeFromAt: fromAt['node-b'],
    runOn,
    outcomes,
  }
}

interface HttpSide {
  requestsPerSecond: number
  p50: number
  p99: number
  non2xx: number
  errors: number
}

/** `GET …/connection` of a campaign node-a runs: through node-a, and through node-b (forwarded). */
async function connectionThroughput(c: TestCluster): Promise<{ owner: HttpSide; other: HttpSide }> {
  const campaignId = 'http-0'
  const view = await c.link(campaignId, 'node-a')
  if (view.node !== 'node-a') throw new Error(`${campaignId} runs on ${view.node}, not node-a`)
  const token = await signToken({ secret: SECRET, sub: USER })
  const target = (id: string) => ({
    url: `${c.node(id).url}/api/campaigns/${campaignId}/connection`,
    headers: { Authorization: `Bearer ${token}` },
    connections: HTTP_CONNECTIONS,
  })
  const targets = { owner: target('node-a'), other: target('node-b') }
  for (const t of Object.values(targets)) await autocannon({ ...t, duration: 1 })
  const slices: Record<keyof typeof targets, AutocannonResult[]> = { owner: [], other: [] }
  for (let round = 0; round < HTTP_ROUNDS; round++) {
    for (const side of ['other', 'owner'] as const) {
      slices[side].push(await autocannon({ ...targets[side], duration: HTTP_SLICE_S }))
    }
  }
  const median = (values: number[]) =>
    [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
  const summary = (results: AutocannonResult[]): HttpSide => ({
    requestsPerSecond: results.reduce((sum, r) => sum + r.requests.average, 0) / results.length,
    p50: median(results.map((r) => r.latency.p50)),
    p99: median(results.map((r) => r.latency.p99)),
    non2xx: results.reduce((sum, r) => sum + r.non2xx, 0),
    errors: results.reduce((sum, r) => sum + r.errors + r.timeouts, 0),
  })
  return { owner: summary(slices.owner), other: summary(slices.other) }
}

interface RollingFigures {
  longest: number[]
  notReadyCampaigns: number
  drains: Array<{ id: string; drainMs: number; startMs: number }>
  failedPolls: Tally
}

/** 30 campaigns linked over 3 nodes; each node drained, started again, in turn. */
async function rollingRestart(postgres: PostgresServer): Promise<RollingFigures> {
  const c = await TestCluster.create(postgres)
  const started: ClusterNode[] = []
  try {
    started.push(...(await c.startAll(IDS)))
    const linked = names('rolling', ROLLING_CAMPAIGNS)
    await eachLimited(linked, 6, async (campaignId, index) => {
      const start = IDS[index % IDS.length]!
      const view = await c.link(campaignId, start)
      if (view.node !== start) throw new Error(`${campaignId} runs on ${view.node}, not ${start}`)
    })
    await c.untilStoredLinked(linked)
    const notReadySince = new Map<string, number>()
    const longest = new Map<string, number>(linked.map((id) => [id, 0]))
    const failedPolls = new Tally()
    let restarting: string | undefined
    let polling = true
    const pollers = linked.map(async (campaignId, index) => {
      while (polling) {
        c.ledger.throwIfViolated()
        const polledAt = performance.now()
        const live = IDS.filter((id) => id !== restarting && c.nodes.has(id))
        const via = live[index % Math.max(1, live.length)]
        if (via !== undefined) {
          try {
            const view = await c.connection(via, campaignId, 2_000)
            const now = performance.now()
            const since = notReadySince.get(campaignId)
            if (view.status === 'ready') {
              if (since !== undefined) {
                longest.set(campaignId, Math.max(longest.get(campaignId)!, now - since))
                notReadySince.delete(campaignId)
              }
            } else if (since === undefined) {
              notReadySince.set(campaignId, now)
            }
          } catch (error) {
            failedPolls.add(`via ${via}: ${String(error)}`)
          }
        }
        await sleep(Math.max(0, polledAt + 100 - performance.now()))
      }
    })
    const drains: RollingFigures['drains'] = []
    try {
      for (const id of IDS) {
        const previous = c.node(id)
        restarting = id
        const stopAt = performance.now()
        const exit = await c.stop(id)
        if (exit.code !== 0) throw new Error(`${id} exited ${JSON.stringify(exit)} after SIGTERM`)
        const startAt = performance.now()
        started.push(await c.restart(id, previous))
        drains.push({ id, drainMs: startAt - stopAt, startMs: performance.now() - startAt })
        restarting = undefined
      }
      await c.until(
        () => (notReadySince.size === 0 ? true : undefined),
        'every campaign ready after the rolling restart',
        30_000,
        100
      )
    } finally {
      polling = false
      await Promise.allSettled(pollers)
    }
    reportWarnings(c, 'rolling', started)
    const times = [...longest.values()]
    return {
      longest: times,
      notReadyCampaigns: times.filter((t) => t > 0).length,
      drains,
      failedPolls,
    }
  } finally {
    dumpLogs('rolling', started)
    await c.close()
  }
}

/** Runs one part and prints its section; a part that fails is reported and the next one runs. */
async function part<T>(
  name: string,
  run: () => Promise<T>,
  print: (figures: T) => void
): Promise<T | undefined> {
  let figures: T
  try {
    figures = await run()
  } catch (error) {
    process.exitCode = 1
    console.log(`### ${name}: FAILED`)
    console.log('')
    console.log('```')
    console.log(String((error as Error).stack ?? error).slice(0, 4_000))
    console.log('```')
    console.log('')
    return undefined
  }
  print(figures)
  console.log('')
  return figures
}

function printFailoverSection(f: FailoverFigures): void {
  console.log(
    `### Failover: kill -9 of the node running ${FAILOVER_CAMPAIGNS} linked campaigns → each ready on another node (LEASE_TTL_MS ${f.ttlMs.toLocaleString('en')}, polled every 50 ms)`
  )
  console.log('')
  console.log(
    '| LEASE_TTL_MS / KILL_TIMEOUT_MS | p50 | p99 | max | LEASE_TTL_MS | bound: TTL + KILL_TIMEOUT_MS + 2 s + TTL/3 | max within the bound | restored on | polls failed |'
  )
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
  printFailover(f)
  if (f.failedPolls.total > 0) {
    console.log('')
    console.log(`Failed polls: ${f.failedPolls.toString()}`)
  }
}

const p99 = (values: number[]) => percentile(values, 99)
const p50 = (values: number[]) => percentile(values, 50)

function printHttp(http: { owner: HttpSide; other: HttpSide }): void {
  console.log(
    `### GET …/connection: autocannon, ${HTTP_CONNECTIONS} connections, ${HTTP_ROUNDS} × ${HTTP_SLICE_S} s per node, alternating`
  )
  console.log('')
  console.log('| through | req/s | p50 | p99 | non-2xx | errors |')
  console.log('| --- | --- | --- | --- | --- | --- |')
  for (const [name, side] of [
    ['node-a, which runs the campaign (the baseline)', http.owner],
    ['node-b, which forwards to node-a', http.other],
  ] as const) {
    console.log(
      `| ${name} | ${Math.round(side.requestsPerSecond).toLocaleString('en')} | ${side.p50} ms | ${side.p99} ms | ${side.non2xx} | ${side.errors} |`
    )
  }
  const ratio = http.other.requestsPerSecond / http.owner.requestsPerSecond
  console.log('')
  console.log(
    `Target: forwarded ≥ 50 % of the owner's: ${(ratio * 100).toFixed(1)} %, ${ratio >= 0.5 ? 'met' : 'MISSED'}.`
  )
}

function printQr(qr: QrFigures): void {
  const target = 2 * p99(qr.sameNode) + 10
  console.log(
    `### QR delivery: ${QR_SESSIONS} sessions started on node-a (one every ${QR_START_EVERY_MS} ms), each watched from node-a and node-b`
  )
  console.log('')
  console.log(
    '| subscriber | start → qr_code p50 | p99 | max | QR event (`at`) → arrival p50 | p99 |'
  )
  console.log('| --- | --- | --- | --- | --- | --- |')
  const row = (name: string, values: number[], fromAt: number[]) =>
    console.log(
      `| ${name} | ${ms(p50(values))} | ${ms(p99(values))} | ${ms(Math.max(...values))} | ${ms(p50(fromAt))} | ${ms(p99(fromAt))} |`
    )
  row('same node (node-a, the baseline)', qr.sameNode, qr.sameNodeFromAt)
  row('cross node (node-b)', qr.crossNode, qr.crossNodeFromAt)
  console.log('')
  console.log(
    `node-b's arrival minus node-a's for the same QR: p50 ${ms(p50(qr.difference))}, p99 ${ms(p99(qr.difference))}, max ${ms(Math.max(...qr.difference))}. ` +
      `Sessions ran on ${JSON.stringify(qr.runOn)}; after the last QR arrived: ${JSON.stringify(qr.outcomes)} (all awaitingScan expected).`
  )
  console.log(
    `Target: cross-node p99 ≤ 2 × same-node p99 + 10 ms = ${ms(target)}: ${ms(p99(qr.crossNode))}, ${p99(qr.crossNode) <= target ? 'met' : 'MISSED'}.`
  )
}

function printRolling(rolling: RollingFigures, baseline: FailoverFigures | undefined): void {
  console.log(
    `### Rolling restart: ${ROLLING_CAMPAIGNS} linked campaigns over 3 nodes; SIGTERM, exit, start again, node by node (polled every 100 ms)`
  )
  console.log('')
  console.log(
    '| longest time not ready per campaign, p50 | max | campaigns ever not ready | kill -9 failover of the same run, p50 / max (baseline) | polls failed |'
  )
  console.log('| --- | --- | --- | --- | --- |')
  const base = baseline
    ? `${ms(p50(baseline.times))} / ${ms(Math.max(...baseline.times))}`
    : '(failed)'
  console.log(
    `| ${ms(p50(rolling.longest))} | ${ms(Math.max(...rolling.longest))} | ${rolling.notReadyCampaigns} of ${ROLLING_CAMPAIGNS} | ${base} | ${rolling.failedPolls.total} |`
  )
  console.log('')
  console.log(
    `Per node, SIGTERM → exit (drain) and start → listening: ${rolling.drains.map((d) => `${d.id} ${ms(d.drainMs)} + ${ms(d.startMs)}`).join(', ')}.`
  )
  if (rolling.failedPolls.total > 0) console.log(`Failed polls: ${rolling.failedPolls.toString()}`)
}

async function main(): Promise<void> {
  const defaultTtl =
    process.argv.includes('--default-ttl') || process.env.BENCH_CLUSTER_DEFAULT_TTL === '1'
  console.log('## Cluster: three nodes on one PostgreSQL (simulated engine, node processes)')
  console.log('')
  console.log(
    `${stamp()} UTC, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, load average ${load()} at the start. ` +
      `LEASE_TTL_MS=${LEASE_TTL_MS}, KILL_TIMEOUT_MS=${KILL_TIMEOUT_MS} unless said otherwise.`
  )
  console.log('')
  const postgres = await startPostgres()
  const stopAll = () => {
    killServices()
    void postgres.stop().finally(() => process.exit(130))
  }
  process.once('SIGINT', stopAll)
  process.once('SIGTERM', stopAll)
  try {
    // The throughput and the QR delivery on one cluster (nothing is killed there).
    const c = await TestCluster.create(postgres)
    const started: ClusterNode[] = []
    try {
      started.push(...(await c.startAll(IDS)))
      await part('GET …/connection', () => connectionThroughput(c), printHttp)
      await part('QR delivery', () => qrDelivery(c), printQr)
      reportWarnings(c, 'http+qr', started)
    } finally {
      dumpLogs('http-qr', started)
      await c.close()
    }
    console.log('')
    const fast = await part(
      'Failover',
      () => failover(postgres, LEASE_TTL_MS, KILL_TIMEOUT_MS),
      printFailoverSection
    )
    await part(
      'Rolling restart',
      () => rollingRestart(postgres),
      (figures) => printRolling(figures, fast)
    )
    if (defaultTtl) {
      await part(
        'Failover, default lease',
        () => failover(postgres, 15_000, 5_000),
        printFailoverSection
      )
    }
    console.log(`Load average at the end: ${load()}.`)
  } finally {
    process.off('SIGINT', stopAll)
    process.off('SIGTERM', stopAll)
    await postgres.stop()
  }
}

await main()
