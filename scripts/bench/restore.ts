/**
 * The restore of linked campaigns at start (issue 11), one run in its own process (started by
 * scripts/bench.ts). Prints one JSON line of figures.
 *
 *   node --import tsx scripts/bench/restore.ts <N> <RESTORE_CONCURRENCY>
 *
 * A SQLite store in a fresh DATA_DIR is seeded with N campaigns as a stopped process leaves them
 * (claimed, linked, wanted `running`, the last session `ready` and never ended), flushed and closed.
 * Then the whole server starts on it (`startServer`, port 0, the simulated engine) and:
 *
 * - first answer: from the call of `startServer` until the first `GET /healthz` answered (it can
 *   only be asked once the server listens, i.e. once `startServer` resolved: the store is opened
 *   and every campaign loaded before that, and the restore begins as it listens);
 * - all ready: from the call of `startServer` until every restored campaign is `ready`;
 * - loop delay: `monitorEventLoopDelay` over the same span; `/healthz` latency: one keep-alive
 *   client asking every 10 ms meanwhile (in the same process: its own cost is in the figures).
 *
 * `N = 0` is the baseline: the same start on an empty store, watched for 2 s.
 *
 * The engine: the simulated one (the configuration's delays: a launch takes SIM_QR_DELAY_MS, 300 ms,
 * to authenticate, then 500 ms to ready). Until it keeps saved logins under DATA_DIR by itself,
 * each seeded campaign has a saved login under DATA_DIR, so it starts as a saved login does (authenticated,
 * then ready, no QR).
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { loadConfig } from '../../src/config.ts'
import { systemClock } from '../../src/clock.ts'
import { createSimulatedEngine } from '../../src/engines/simulated.ts'
import { simulatedLoginFiles } from '../../src/engines/simulatedLogins.ts'
import { silentLogger } from '../../src/logger.ts'
import { startServer } from '../../src/server.ts'
import { openStore } from '../../src/store/index.ts'
import { percentile, round, until } from './support.ts'

const [nText = '1000', concurrencyText = '100'] = process.argv.slice(2)
const N = Number(nText)
const CONCURRENCY = Number(concurrencyText)
/** The simulated engine's delays (as the server configures it). */
const QR_DELAY_MS = 300
const AUTH_DELAY_MS = 500
/** How long the baseline (an empty store) is watched. */
const BASELINE_WATCH_MS = 2_000

export interface RestoreFigures {
  campaigns: number
  concurrency: number
  firstAnswerMs: number
  /** Null for the baseline. */
  allReadyMs: number | null
  /** The pacing's floor: ceil(N / concurrency) launches of QR_DELAY_MS + AUTH_DELAY_MS each. */
  floorMs: number
  restored: number
  loopDelayP99Ms: number
  loopDelayMaxMs: number
  healthzP99Ms: number
  healthzMaxMs: number
  healthzAnswers: number
}

async function seed(dataDir: string): Promise<void> {
  const store = await openStore({ dataDir, pruneIntervalMs: 0 })
  const now = Date.now() - 60_000
  try {
    await Promise.all(Array.from({ length: N }, (_, i) => store.claim(`r${i}`, `user${i % 100}`)))
    for (let i = 0; i < N; i++) {
      const campaignId = `r${i}`
      store.setLinked(campaignId, true)
      store.setWanted(campaignId, 'running')
      store.saveSession({
        sessionId: `old-${campaignId}`,
        campaignId,
        status: 'ready',
        reason: null,
        detail: null,
        history: [
          { status: 'initializing', at: now },
          { status: 'authenticating', at: now + QR_DELAY_MS },
          { status: 'ready', at: now + QR_DELAY_MS + AUTH_DELAY_MS },
        ],
        startedAt: now,
        updatedAt: now + QR_DELAY_MS + AUTH_DELAY_MS,
        endedAt: null,
        lastSeenAlive: null,
      })
    }
    await store.flush()
  } finally {
    await store.close()
  }
}

/** GET /healthz on one keep-alive connection; resolves with the latency in ms. */
function healthz(port: number, agent: Agent): Promise<number> {
  const asked = performance.now()
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/healthz', agent }, (res) => {
      res.resume()
      res.on('end', () =>
        res.statusCode === 200
          ? resolve(performance.now() - asked)
          : reject(new Error(`/healthz answered ${res.statusCode}`))
      )
    })
    req.on('error', reject)
    req.end()
  })
}

async function run(): Promise<RestoreFigures> {
  const dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-bench-restore-'))
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  try {
    await seed(dataDir)
    const config = loadConfig({
      WA_ENGINE: 'simulated',
      PORT: '0',
      JWT_SECRET: 'bench-restore-'.padEnd(40, 'x'),
      LOG_LEVEL: 'silent',
      DATA_DIR: dataDir,
      RESTORE_CONCURRENCY: String(CONCURRENCY),
      SIM_QR_DELAY_MS: String(QR_DELAY_MS),
    })
    const engine = createSimulatedEngine({
      qrDelayMs: config.simulator.qrDelayMs,
      qrRotateMs: config.simulator.qrRotateMs,
      authDelayMs: AUTH_DELAY_MS,
      destroyTimeoutMs: config.timeouts.destroyMs,
      killTimeoutMs: config.timeouts.killMs,
      dataDir,
    })
    // Each campaign's saved login, as a phone's scan in an earlier run left it.
    const logins = simulatedLoginFiles(dataDir, systemClock)
    for (let i = 0; i < N; i++) logins.save(`r${i}`)

    const loop = monitorEventLoopDelay({ resolution: 1 })
    loop.enable()
    const started = performance.now()
    const server = await startServer(config, { logger: silentLogger, engine })
    try {
      await healthz(server.port, agent)
      const firstAnswerMs = performance.now() - started
      const latencies: number[] = []
      let done = false
      const asking = (async () => {
        while (!done) {
          latencies.push(await healthz(server.port, agent))
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
      })()
      let allReadyMs: number | null = null
      if (N === 0) {
        await new Promise((resolve) => setTimeout(resolve, BASELINE_WATCH_MS))
      } else {
        await until(() => server.sessions.stats().byStatus.ready === N, 'every campaign ready')
        allReadyMs = performance.now() - started
      }
      loop.disable()
      done = true
      await asking
      const restored = server.sessions.stats().restore?.started ?? 0
      if (restored !== N) throw new Error(`${restored} of ${N} campaigns restored`)
      return {
        campaigns: N,
        concurrency: CONCURRENCY,
        firstAnswerMs: round(firstAnswerMs),
        allReadyMs: allReadyMs === null ? null : round(allReadyMs),
        floorMs: Math.ceil(N / CONCURRENCY) * (QR_DELAY_MS + AUTH_DELAY_MS),
        restored,
        loopDelayP99Ms: round(loop.percentile(99) / 1e6),
        loopDelayMaxMs: round(loop.max / 1e6),
        healthzP99Ms: round(percentile(latencies, 99)),
        healthzMaxMs: round(latencies.reduce((max, x) => Math.max(max, x), 0)),
        healthzAnswers: latencies.length,
      }
    } finally {
      await server.close()
    }
  } finally {
    agent.destroy()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

console.log(JSON.stringify(await run()))
