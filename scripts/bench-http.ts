/**
 * `npx tsx scripts/bench-http.ts [--quick]`: the edge benchmarks of issue 3.
 *
 * The service runs in a child process (so that the load generator does not share its event
 * loop); this process drives it over HTTP and WebSocket and prints a Markdown report.
 *
 * 1. HTTP: autocannon `GET /api/campaigns/:id/connection` with JWT verification, 64 connections for
 *    10 s, against a bare Hono route on the same child answering the same JSON without auth or
 *    lookup.
 * 2. QR delivery, steady: 2,000 sessions of the simulated engine, one subscribed socket each, QRs
 *    rotating every 20 s spread over time (~100/s), measured for 60 s: engine QR event → socket
 *    latency (p50, p99) and the server's event-loop delay p99.
 * 3. QR delivery, burst: 1,000 sessions of a stand-in engine whose QRs all rotate in the same tick:
 *    event-loop delay p99, time until the last socket has its QR, CPU per rendered QR.
 *
 * 2 and 3 run twice: with the worker-pool renderer, and with the seed's way (render inline on the
 * event loop for every event).
 *
 * 4. Refused upgrades (issue 8): `GET /healthz` latency (one keep-alive client, 100 requests a
 *    second) with no other load, then while a third process opens 1,000 WebSocket upgrades a
 *    second that the service refuses (bad or missing token, `/ws/campaigns` and `/ws/inspect`),
 *    each closed with a TCP reset right after its request.
 *
 * @module
 */
import { fork, type ChildProcess } from 'node:child_process'
import { Agent, get } from 'node:http'
import { connect } from 'node:net'
import { cpus, loadavg, setPriority, totalmem } from 'node:os'
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon, { type Result as AutocannonResult } from 'autocannon'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import QRCode from 'qrcode'
import { WebSocket } from 'ws'
import { loadConfig } from '../src/config.ts'
import type { Engine, EngineSession, EngineSessionOptions } from '../src/engines/engine.ts'
import { fakeWhatsAppQr } from '../src/engines/simulated.ts'
import { connectionJson } from '../src/http/views.ts'
import { silentLogger } from '../src/logger.ts'
import type { QrImageRenderer } from '../src/qr/renderer.ts'
import { startServer } from '../src/server.ts'
import { signToken } from './token.ts'

const SECRET = 'bench-secret-that-is-long-enough-for-hs256'

type Renderer = 'pool' | 'inline'
type EngineKind = 'simulated' | 'burst' | 'inspect'

type ToChild =
  | { type: 'freeze-bare'; campaignId: string }
  | { type: 'measure-start' }
  | { type: 'measure-stop' }
  | { type: 'rotate' }
type FromChild =
  | { type: 'listening'; url: string; bareUrl: string }
  | { type: 'ok' }
  | { type: 'rotated'; at: number }
  | {
      type: 'measured'
      loopP99Ms: number
      loopMaxMs: number
      cpuMs: number
      rendered: number
      gcMaxMs: number
    }

// ---------------------------------------------------------------------------------------------
// Child: the service under test.
// ---------------------------------------------------------------------------------------------

/** A stand-in engine whose sessions show a QR only when told, all in the same tick. */
function createBurstEngine(): Engine & { rotateAll(): number } {
  const live = new Map<string, EngineSessionOptions>()
  return {
    name: 'burst',
    createSession(options): EngineSession {
      return {
        start: () => void live.set(options.sessionId, options),
        stop: async () => {
          live.delete(options.sessionId)
          return { forced: false, durationMs: 0 }
        },
        probe: async () => ({ state: 'CONNECTED' }),
      }
    },
    rotateAll() {
      for (const session of live.values()) session.onEvent({ type: 'qr', qr: fakeWhatsAppQr() })
      return live.size
    },
    close: async () => {},
  }
}

/** The seed's way: every QR event rendered on the event loop, for every subscriber, no cache. */
function createInlineRenderer(): QrImageRenderer & { rendered: number } {
  const renderer = {
    format: 'png' as const,
    rendered: 0,
    async imageFor({ qr }: { qr: string }) {
      renderer.rendered++
      return QRCode.toDataURL(qr)
    },
    forget() {},
    counts: () => ({ rendered: renderer.rendered, cacheHits: 0 }),
    close: async () => {},
  }
  return renderer
}

async function runChild(renderer: Renderer, engineKind: EngineKind): Promise<void> {
  const send = (message: FromChild) => process.send?.(message)
  const burst = engineKind === 'burst' ? createBurstEngine() : undefined
  const inline = renderer === 'inline' ? createInlineRenderer() : undefined
  const config = loadConfig({
    WA_ENGINE: 'simulated',
    PORT: '0',
    JWT_SECRET: SECRET,
    LOG_LEVEL: 'silent',
    MAX_SESSIONS: '10000',
    INIT_TIMEOUT_MS: '600000',
    SCAN_TIMEOUT_MS: '600000',
    SIM_QR_DELAY_MS: '300',
    SIM_QR_ROTATE_MS: '20000',
    INSPECT: String(engineKind === 'inspect'),
  })
  const server = await startServer(config, {
    logger: silentLogger,
    engine: burst,
    qrImages: inline,
  })
  const renderedSoFar = async () => {
    if (inline) return inline.rendered
    const text = await (await fetch(`${server.url}/metrics`)).text()
    return Number(/^qrvisor_qr_render_seconds_count (\d+)/m.exec(text)?.[1] ?? 0)
  }

  let bareJson: unknown = {}
  const bare = new Hono().get('/bare', (c) => c.json(bareJson))
  const bareServer = serve({ fetch: bare.fetch, port: 0, hostname: '127.0.0.1' })
  await new Promise((resolve) => bareServer.once('listening', resolve))
  const barePort = (bareServer.address() as { port: number }).port

  const loop = monitorEventLoopDelay({ resolution: 5 })
  let gcMaxMs = 0
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcMaxMs = Math.max(gcMaxMs, entry.duration)
  }).observe({ entryTypes: ['gc'] })
  let cpuStart = process.cpuUsage()
  let renderedStart = 0

  process.on('message', async (message: ToChild) => {
    switch (message.type) {
      case 'freeze-bare':
        bareJson = connectionJson(server.sessions.getCampaign(message.campaignId))
        send({ type: 'ok' })
        return
      case 'measure-start':
        gcMaxMs = 0
        loop.reset()
        loop.enable()
        cpuStart = process.cpuUsage()
        renderedStart = await renderedSoFar()
        send({ type: 'ok' })
        return
      case 'rotate': {
        gcMaxMs = 0
        loop.reset()
        loop.enable()
        cpuStart = process.cpuUsage()
        renderedStart = await renderedSoFar()
        const at = Date.now()
        burst?.rotateAll()
        send({ type: 'rotated', at })
        return
      }
      case 'measure-stop': {
        loop.disable()
        const cpu = process.cpuUsage(cpuStart)
        send({
          type: 'measured',
          loopP99Ms: loop.percentile(99) / 1e6,
          loopMaxMs: loop.max / 1e6,
          cpuMs: (cpu.user + cpu.system) / 1000,
          rendered: (await renderedSoFar()) - renderedStart,
          gcMaxMs,
        })
        return
      }
    }
  })
  send({ type: 'listening', url: server.url, bareUrl: `http://127.0.0.1:${barePort}/bare` })
}

// ---------------------------------------------------------------------------------------------
// Parent: the load.
// ---------------------------------------------------------------------------------------------

class Child {
  private queue: FromChild[] = []
  private waiters: Array<() => void> = []
  private constructor(readonly process: ChildProcess) {
    process.on('message', (message: FromChild) => {
      this.queue.push(message)
      for (const wake of this.waiters.splice(0)) wake()
    })
  }

  static async start(
    renderer: Renderer,
    engine: EngineKind
  ): Promise<Child & { url: string; bareUrl: string }> {
    const script = fileURLToPath(import.meta.url)
    const child = new Child(
      fork(script, ['--child', renderer, engine], {
        execArgv: ['--import', 'tsx'],
        stdio: 'inherit',
      })
    )
    const listening = await child.receive('listening')
    return Object.assign(child, { url: listening.url, bareUrl: listening.bareUrl })
  }

  async receive<T extends FromChild['type']>(type: T): Promise<Extract<FromChild, { type: T }>> {
    for (;;) {
      const index = this.queue.findIndex((message) => message.type === type)
      if (index !== -1) return this.queue.splice(index, 1)[0] as Extract<FromChild, { type: T }>
      await new Promise<void>((resolve) => this.waiters.push(resolve))
    }
  }

  async ask<T extends FromChild['type']>(message: ToChild, reply: T) {
    this.process.send(message)
    return this.receive(reply)
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      this.process.once('exit', () => resolve())
      this.process.kill('SIGKILL')
    })
  }
}

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const round = (value: number, digits = 1) => Number(value.toFixed(digits))

async function startSession(url: string, token: string, campaignId: string): Promise<string> {
  const response = await fetch(`${url}/api/campaigns/${campaignId}/qr-code`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}` },
  })
  const body = (await response.json()) as { sessionId?: string }
  if (!body.sessionId)
    throw new Error(`qr-code answered ${response.status}: ${JSON.stringify(body)}`)
  return body.sessionId
}

interface Subscriber {
  ws: WebSocket
  qrTimes: Array<{ receivedAt: number; eventAt: number }>
  subscribed: Promise<void>
}

function subscribe(url: string, sessionId: string): Subscriber {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/ws/campaigns`)
  const subscriber: Subscriber = { ws, qrTimes: [], subscribed: Promise.resolve() }
  subscriber.subscribed = new Promise((resolve, reject) => {
    ws.once('error', reject)
    ws.once('open', () => ws.send(JSON.stringify({ type: 'subscribe', sessionId })))
    ws.on('message', (data) => {
      const message = JSON.parse(data.toString()) as { type: string; at: string }
      if (message.type === 'subscribed') resolve()
      if (message.type === 'qr_code') {
        subscriber.qrTimes.push({ receivedAt: Date.now(), eventAt: Date.parse(message.at) })
      }
    })
  })
  return subscriber
}

interface HttpFigures {
  requestsPerSecond: number
  p50: number
  p99: number
  non2xx: number
}

/**
 * The two routes are measured in alternating 2 s slices (64 connections each), `durationS` in
 * total per route, so that load from elsewhere on the machine falls on both alike.
 */
async function benchHttp(token: string, durationS: number) {
  const child = await Child.start('pool', 'simulated')
  try {
    await startSession(child.url, token, 'bench')
    await sleep(500)
    await child.ask({ type: 'freeze-bare', campaignId: 'bench' }, 'ok')
    const targets = {
      api: {
        url: `${child.url}/api/campaigns/bench/connection`,
        headers: { authorization: `Bearer ${token}` },
      },
      bare: { url: child.bareUrl, headers: {} },
    }
    const slices: Record<keyof typeof targets, AutocannonResult[]> = { api: [], bare: [] }
    // Warm-up, then alternate.
    for (const target of Object.values(targets)) {
      await autocannon({ ...target, connections: 64, duration: 2 })
    }
    for (let i = 0; i < Math.max(1, Math.round(durationS / 2)); i++) {
      for (const name of ['bare', 'api'] as const) {
        slices[name].push(await autocannon({ ...targets[name], connections: 64, duration: 2 }))
      }
    }
    const summarize = (results: AutocannonResult[]): HttpFigures => {
      const median = (values: number[]) =>
        [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
      return {
        requestsPerSecond: results.reduce((sum, r) => sum + r.requests.average, 0) / results.length,
        p50: median(results.map((r) => r.latency.p50)),
        p99: median(results.map((r) => r.latency.p99)),
        non2xx: results.reduce((sum, r) => sum + r.non2xx, 0),
      }
    }
    return { api: summarize(slices.api), bare: summarize(slices.bare) }
  } finally {
    await child.stop()
  }
}

async function benchSteady(renderer: Renderer, token: string, sessions: number, measureS: number) {
  const child = await Child.start(renderer, 'simulated')
  const subscribers: Subscriber[] = []
  try {
    // Start 100 sessions a second so that their 20 s rotations are spread over time.
    const rampMs = (sessions / 100) * 1000
    const started = Date.now()
    for (let i = 0; i < sessions; i++) {
      const due = started + (i * rampMs) / sessions
      if (due > Date.now()) await sleep(due - Date.now())
      const sessionId = await startSession(child.url, token, `steady-${i}`)
      subscribers.push(subscribe(child.url, sessionId))
    }
    await Promise.all(subscribers.map((s) => s.subscribed))
    await child.ask({ type: 'measure-start' }, 'ok')
    const from = Date.now()
    await sleep(measureS * 1000)
    const to = Date.now()
    const measured = await child.ask({ type: 'measure-stop' }, 'measured')
    const latencies = subscribers
      .flatMap((s) => s.qrTimes)
      .filter((t) => t.eventAt >= from && t.eventAt < to)
      .map((t) => t.receivedAt - t.eventAt)
      .sort((a, b) => a - b)
    return {
      renderer,
      qrs: latencies.length,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      max: latencies.at(-1) ?? NaN,
      ...measured,
    }
  } finally {
    for (const s of subscribers) s.ws.terminate()
    await child.stop()
  }
}

async function benchBurst(renderer: Renderer, token: string, sessions: number) {
  const child = await Child.start(renderer, 'burst')
  const subscribers: Subscriber[] = []
  try {
    const ids = await Promise.all(
      Array.from({ length: sessions }, (_, i) => startSession(child.url, token, `burst-${i}`))
    )
    for (const id of ids) subscribers.push(subscribe(child.url, id))
    await Promise.all(subscribers.map((s) => s.subscribed))

    const burst = async (round: number) => {
      const { at } = await child.ask({ type: 'rotate' }, 'rotated')
      while (subscribers.some((s) => s.qrTimes.length < round)) await sleep(5)
      const last = Math.max(...subscribers.map((s) => s.qrTimes[round - 1]!.receivedAt))
      const measured = await child.ask({ type: 'measure-stop' }, 'measured')
      return { lastQrAfterMs: last - at, ...measured }
    }
    await burst(1) // warm-up: JIT, worker start
    const result = await burst(2)
    return { renderer, ...result, cpuPerQrMs: result.cpuMs / result.rendered }
  } finally {
    for (const s of subscribers) s.ws.terminate()
    await child.stop()
  }
}

/** Where refused upgrades are aimed: each is refused before or after verifying a token. */
const REFUSED_UPGRADE_PATHS = [
  '/ws/campaigns?token=garbage',
  '/ws/inspect',
  '/ws/inspect?token=garbage',
  `/ws/campaigns?token=${'x'.repeat(40)}.${'y'.repeat(40)}.${'z'.repeat(40)}`,
]

/**
 * The storm process: on 'start', `ratePerSecond` upgrade requests a second, each closed with a
 * TCP reset right after it is written; on 'stop', it stops and reports how many it opened.
 */
function runStorm(url: string, ratePerSecond: number): void {
  // An attacker's CPU is not the service's: on a shared machine the storm yields to it.
  setPriority(10)
  const port = Number(new URL(url).port)
  let opened = 0
  let startedAt = 0
  let tick: ReturnType<typeof setInterval> | undefined
  const openDue = () => {
    const due = Math.floor(((performance.now() - startedAt) / 1000) * ratePerSecond)
    while (opened < due) {
      const path = REFUSED_UPGRADE_PATHS[opened % REFUSED_UPGRADE_PATHS.length]!
      opened++
      const socket = connect(port, '127.0.0.1')
      socket.on('error', () => {})
      socket.once('connect', () => {
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
            'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'
        )
        socket.resetAndDestroy()
      })
    }
  }
  process.on('message', (command: 'start' | 'stop') => {
    if (command === 'start') {
      opened = 0
      startedAt = performance.now()
      tick = setInterval(openDue, 5)
      return
    }
    clearInterval(tick)
    process.send?.({ opened, seconds: (performance.now() - startedAt) / 1000 })
  })
  process.send?.('ready')
}

/** `GET /healthz` from one keep-alive connection, one request every 10 ms, for `durationS`. */
async function probeHealthz(url: string, durationS: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const latencies: number[] = []
  let failed = 0
  const until = Date.now() + durationS * 1000
  try {
    while (Date.now() < until) {
      const started = performance.now()
      const ok = await new Promise<boolean>((resolve) => {
        const request = get(`${url}/healthz`, { agent }, (response) => {
          response.resume()
          response.once('end', () => resolve(response.statusCode === 200))
        })
        request.once('error', () => resolve(false))
      })
      const ms = performance.now() - started
      if (ok) latencies.push(ms)
      else failed++
      await sleep(Math.max(0, 10 - ms))
    }
  } finally {
    agent.destroy()
  }
  return { latencies, failed }
}

interface SliceFigures {
  latencies: number[]
  failed: number
  loopP99Ms: number
  cpuMs: number
  seconds: number
}

interface ProbeFigures {
  requests: number
  failed: number
  p50: number
  p99: number
  /** The median of the slices' p99. */
  sliceP99: number
  max: number
  /** The median of the slices' event-loop delay p99 in the service. */
  loopP99Ms: number
  /** The service's CPU over the slices, in % of one core. */
  cpuPercent: number
}

function summarizeSlices(slices: SliceFigures[]): ProbeFigures {
  const median = (values: number[]) =>
    [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN
  const all = slices.flatMap((slice) => slice.latencies).sort((a, b) => a - b)
  const seconds = slices.reduce((sum, slice) => sum + slice.seconds, 0)
  return {
    requests: all.length,
    failed: slices.reduce((sum, slice) => sum + slice.failed, 0),
    p50: round(percentile(all, 50), 2),
    p99: round(percentile(all, 99), 2),
    sliceP99: round(
      median(
        slices.map((slice) =>
          percentile(
            [...slice.latencies].sort((a, b) => a - b),
            99
          )
        )
      ),
      2
    ),
    max: round(all.at(-1) ?? NaN, 2),
    loopP99Ms: round(median(slices.map((slice) => slice.loopP99Ms))),
    cpuPercent: round(
      (100 * slices.reduce((sum, slice) => sum + slice.cpuMs, 0)) / (seconds * 1000)
    ),
  }
}

/**
 * Baseline and storm in alternating slices of `sliceS` (baseline, storm, baseline, …), so that
 * load from elsewhere on the machine falls on both alike.
 */
async function benchRefusedUpgrades(slices: number, sliceS: number, ratePerSecond: number) {
  const child = await Child.start('pool', 'inspect')
  const storm = fork(
    fileURLToPath(import.meta.url),
    ['--storm', child.url, String(ratePerSecond)],
    {
      execArgv: ['--import', 'tsx'],
      stdio: 'inherit',
    }
  )
  const fromStorm = () =>
    new Promise<unknown>((resolve) => storm.once('message', (message) => resolve(message)))
  try {
    await fromStorm() // ready
    await probeHealthz(child.url, 1) // warm-up
    const measureSlice = async (): Promise<SliceFigures> => {
      await child.ask({ type: 'measure-start' }, 'ok')
      const started = performance.now()
      const probe = await probeHealthz(child.url, sliceS)
      const seconds = (performance.now() - started) / 1000
      const measured = await child.ask({ type: 'measure-stop' }, 'measured')
      return { ...probe, loopP99Ms: measured.loopP99Ms, cpuMs: measured.cpuMs, seconds }
    }
    const baseline: SliceFigures[] = []
    const underStorm: SliceFigures[] = []
    let opened = 0
    let stormSeconds = 0
    for (let i = 0; i < slices; i++) {
      baseline.push(await measureSlice())
      storm.send('start')
      await sleep(300)
      underStorm.push(await measureSlice())
      const stopped = fromStorm()
      storm.send('stop')
      const counts = (await stopped) as { opened: number; seconds: number }
      opened += counts.opened
      stormSeconds += counts.seconds
    }
    return {
      baseline: summarizeSlices(baseline),
      underStorm: summarizeSlices(underStorm),
      ratePerSecond: opened / stormSeconds,
      opened,
      alive: child.process.exitCode === null,
    }
  } finally {
    storm.kill('SIGKILL')
    await child.stop()
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      child: { type: 'string' },
      storm: { type: 'string' },
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      renderer: { type: 'string' },
      seconds: { type: 'string' },
    },
    allowPositionals: true,
    strict: false,
  })
  if (typeof values.child === 'string') {
    const [renderer, engine] = process.argv.slice(process.argv.indexOf('--child') + 1)
    await runChild(renderer as Renderer, engine as EngineKind)
    return
  }
  if (typeof values.storm === 'string') {
    const [url, rate] = process.argv.slice(process.argv.indexOf('--storm') + 1)
    runStorm(url!, Number(rate))
    return
  }
  const quick = values.quick === true
  const only = typeof values.only === 'string' ? values.only : undefined
  const wanted = (part: string) => only === undefined || only === part
  const renderers: Renderer[] =
    values.renderer === 'pool' || values.renderer === 'inline'
      ? [values.renderer]
      : ['pool', 'inline']
  const steadySeconds =
    typeof values.seconds === 'string' ? Number(values.seconds) : quick ? 30 : 60
  const token = await signToken({ secret: SECRET, sub: 'bench', admin: true, ttlSeconds: 3600 })
  const log = (line: string) => console.error(`[bench] ${line}`)

  const loadAtStart = round(loadavg()[0] ?? 0)
  const cpu = cpus()
  const report = [
    `Machine: ${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, ${round(totalmem() / 1024 ** 3)} GiB RAM, Node ${process.version}, ${new Date().toISOString()}${quick ? ' (quick run)' : ''}`,
  ]
  const label = (renderer: Renderer) =>
    renderer === 'pool' ? 'worker pool, cached' : 'seed: inline on each event'

  if (wanted('http')) {
    log('HTTP: connection route vs bare route')
    const { api, bare } = await benchHttp(token, quick ? 4 : 10)
    report.push(
      '',
      '### HTTP: GET /api/campaigns/:id/connection (64 connections, ' +
        (quick ? 4 : 10) +
        ' s per route)',
      '',
      '| route | req/s (mean) | p50 ms | p99 ms | non-2xx |',
      '| --- | ---: | ---: | ---: | ---: |',
      `| with JWT verification + lookup | ${round(api.requestsPerSecond, 0)} | ${api.p50} | ${api.p99} | ${api.non2xx} |`,
      `| bare Hono route, same JSON | ${round(bare.requestsPerSecond, 0)} | ${bare.p50} | ${bare.p99} | ${bare.non2xx} |`,
      '',
      `Ratio: ${round((100 * api.requestsPerSecond) / bare.requestsPerSecond)} % of the bare route (alternating 2 s slices; p50/p99 are the slices' medians).`
    )
  }
  if (wanted('steady')) {
    report.push(
      '',
      '### QR delivery, steady (sessions rotating every 20 s, spread; one socket each)',
      '',
      '| renderer | QRs delivered | latency p50 ms | p99 ms | max ms | event-loop delay p99 ms | max ms | longest GC ms | process CPU ms per QR |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
    )
    for (const renderer of renderers) {
      log(`QR steady (${renderer})`)
      const r = await benchSteady(renderer, token, quick ? 500 : 2000, steadySeconds)
      report.push(
        `| ${label(renderer)} | ${r.qrs} | ${r.p50} | ${r.p99} | ${r.max} | ${round(r.loopP99Ms)} | ${round(r.loopMaxMs)} | ${round(r.gcMaxMs)} | ${round(r.cpuMs / Math.max(1, r.rendered), 2)} |`
      )
    }
  }
  if (wanted('burst')) {
    report.push(
      '',
      '### QR delivery, burst (1,000 sessions rotating in the same tick)',
      '',
      '| renderer | last socket has its QR after ms | event-loop delay p99 ms | max ms | longest GC ms | process CPU ms per QR |',
      '| --- | ---: | ---: | ---: | ---: | ---: |'
    )
    for (const renderer of renderers) {
      log(`QR burst (${renderer})`)
      const r = await benchBurst(renderer, token, 1000)
      report.push(
        `| ${label(renderer)} | ${r.lastQrAfterMs} | ${round(r.loopP99Ms)} | ${round(r.loopMaxMs)} | ${round(r.gcMaxMs)} | ${round(r.cpuPerQrMs, 2)} |`
      )
    }
  }
  if (wanted('upgrades')) {
    log('/healthz under refused upgrades')
    const slices = quick ? 3 : 6
    const sliceS = 3
    const rate = 1000
    const r = await benchRefusedUpgrades(slices, sliceS, rate)
    const row = (name: string, f: ProbeFigures) =>
      `| ${name} | ${f.requests} | ${f.failed} | ${f.p50} | **${f.p99}** | ${f.sliceP99} | ${f.max} | ${f.loopP99Ms} | ${f.cpuPercent} % |`
    report.push(
      '',
      `### GET /healthz while refused upgrades are reset (${slices} × ${sliceS} s each, alternating; 100 requests/s from one keep-alive client)`,
      '',
      '| load | requests | failed | p50 ms | p99 ms | median of slice p99s ms | max ms | service event-loop delay p99 ms (median of slices) | service CPU (of one core) |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      row('none (baseline)', r.baseline),
      row(`${round(r.ratePerSecond, 0)} refused upgrades/s, each reset`, r.underStorm),
      '',
      `Upgrades opened: ${r.opened} (target rate ${rate}/s); the service ${r.alive ? 'was still running' : 'HAD EXITED'} at the end. Target: p99 under 10 ms under the storm: ${r.underStorm.p99 < 10 && r.alive ? 'met' : 'MISSED'}.`
    )
  }
  report.push(
    '',
    `Load average (1 min) at the start and end of the run: ${loadAtStart}, ${round(loadavg()[0] ?? 0)}` +
      ' (other work on the machine competes for the same cores; see the notes).'
  )
  console.log(report.join('\n'))
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
