/**
 * The core benchmark with the durable store on (issue 11), one run in its own process (started by
 * scripts/bench.ts): the same work as scripts/bench/core.ts (N starts with the simulated engine,
 * half to ready, half time out, shut down), on the service in memory (the baseline) or on a store.
 * Prints one JSON line of figures.
 *
 *   node --expose-gc --import tsx scripts/bench/coreStore.ts <memory|sqlite|postgres> <N>
 *
 * Unlike core.ts, whose starts run in one synchronous loop, each start here arrives in its own
 * macrotask, as requests do: a start on a store waits for its owner's claim, and the loop must stay
 * free meanwhile. The baseline arrives the same way. `postgres` creates a database on the server
 * at `TEST_DATABASE_URL` (scripts/bench.ts starts a throwaway one) and drops it at the end.
 *
 * - per start: from the first arrival until the last answer, over N.
 * - CPU per start: the process's CPU time (user + system) over the same span, over N: less
 *   sensitive than wall time to other work on the machine.
 * - answer p99: from a call of `requestSession` until its answer (the claim's commit, on a store).
 * - loop delay: `monitorEventLoopDelay` from the first arrival until the last answer.
 * - write lag: from a record's first unwritten change until its batch committed (the store's
 *   `onBatch`), over the whole run: starts, QRs, scans, timeouts and the shutdown's final writes.
 * - shutdown: the service's, then the store's close (which writes what is queued).
 *
 * @module
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createSimulatedEngine } from '../../src/engines/simulated.ts'
import type { StartResult } from '../../src/session/api.ts'
import {
  createSessionService,
  openSessionService,
  type SupervisedSessionService,
} from '../../src/session/service.ts'
import { openStore, type BatchReport, type CampaignStore } from '../../src/store/index.ts'
import { startPostgres } from '../../test/store/postgresServer.ts'
import { arriving, heapUsed, percentile, round, until } from './support.ts'

type Design = 'memory' | 'sqlite' | 'postgres'

const [designText = 'memory', nText = '10000'] = process.argv.slice(2)
const design = designText as Design
const N = Number(nText)
// Every session of the run shows its QR before the first scan deadline, also when the starts are
// slow (10k starts on SQLite took 12 s on the loaded machine): 23 s at 10k.
const SCAN_MS = 3_000 + 2 * N
const WARM_UP = 300
const TIMEOUTS = {
  initMs: 60_000,
  scanMs: SCAN_MS,
  authMs: 60_000,
  destroyMs: 10_000,
  killMs: 5_000,
}

export interface CoreStoreFigures {
  design: Design
  n: number
  startMs: number
  startUsPerSession: number
  /** CPU time of the process (every thread: SQLite's work included) during the starts, over N. */
  startCpuUsPerSession: number
  answerP99Ms: number
  loopDelayP99Ms: number
  loopDelayMaxMs: number
  /** Null in memory. */
  writes: {
    lagP99Ms: number
    lagMaxMs: number
    /** Write lag p99 of the batches committed in each phase. */
    lagP99MsByPhase: Record<Phase, number>
    batches: number
    rows: number
    longestBatchMs: number
    /** Changes the full write queue did not keep (`STORE_WRITE_QUEUE_MAX`). */
    dropped: number
  } | null
  heapPerSessionBytes: number
  shutdownMs: number
  wallMs: number
}

interface Opened {
  sessions: SupervisedSessionService<StartResult | Promise<StartResult>>
  store: CampaignStore | null
  close(): Promise<void>
}

/** `BENCH_PROGRESS=1`: each phase's end on stderr. */
function progress(what: string): void {
  if (process.env.BENCH_PROGRESS)
    console.error(`[${design} ${N}] ${what} (${JSON.stringify(statsOf())})`)
}
let statsOf: () => unknown = () => null

type Phase = 'starts' | 'qrs' | 'scansAndTimeouts' | 'shutdown'
const PHASES: Phase[] = ['starts', 'qrs', 'scansAndTimeouts', 'shutdown']
let phase: Phase = 'starts'
const batches: Array<BatchReport & { phase: Phase }> = []
const onBatch = (report: BatchReport) => batches.push({ ...report, phase })

async function open(engine: ReturnType<typeof createSimulatedEngine>): Promise<Opened> {
  const options = { engine, timeouts: TIMEOUTS, maxSessions: N + WARM_UP }
  if (design === 'memory') {
    return { sessions: createSessionService(options), store: null, close: async () => {} }
  }
  let location: { dataDir: string; databaseUrl: string | null }
  let release: () => Promise<void>
  const dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-bench-core-'))
  if (design === 'sqlite') {
    location = { dataDir, databaseUrl: null }
    release = async () => rmSync(dataDir, { recursive: true, force: true })
  } else {
    const server = await startPostgres()
    const databaseUrl = await server.createDatabase()
    location = { dataDir, databaseUrl }
    release = async () => {
      await server.stop()
      rmSync(dataDir, { recursive: true, force: true })
    }
  }
  // The store's defaults are the configuration's (STORE_WRITE_LAG_MS 50, queue 10,000).
  const store = await openStore({ ...location, pruneIntervalMs: 0, onBatch })
  const sessions = await openSessionService({ ...options, store, restoreConcurrency: 100 })
  sessions.beginRestore()
  return { sessions, store, close: release }
}

async function run(): Promise<CoreStoreFigures> {
  const engine = createSimulatedEngine({
    qrDelayMs: 50,
    authDelayMs: 50,
    destroyDelayMs: 5,
    destroyTimeoutMs: 10_000,
    killTimeoutMs: 5_000,
  })
  const opened = await open(engine)
  const { sessions, store } = opened
  statsOf = () => ({ ...sessions.stats().byStatus, queued: store?.health().queued })
  try {
    const caller = { userId: 'bench', admin: false }
    // Warm-up, as in core.ts (on a store, these are claims too).
    await Promise.all(
      Array.from({ length: WARM_UP }, (_, i) =>
        sessions.requestSession({ campaignId: `warm${i}`, caller })
      )
    )
    await until(() => sessions.stats().byStatus.awaitingScan === WARM_UP, 'warm-up QRs')
    await Promise.all(
      Array.from({ length: WARM_UP }, (_, i) => sessions.cleanupSession(`warm${i}`))
    )
    await store?.flush()
    batches.length = 0
    const shown = new Set<string>()
    const watching = sessions.observe((event) => {
      if (event.type === 'qr' && event.campaignId.startsWith('c')) shown.add(event.campaignId)
    })
    const heapBefore = heapUsed()

    const profiler = process.env.BENCH_CPU_PROFILE ? await startProfiler() : undefined
    const loop = monitorEventLoopDelay({ resolution: 1 })
    loop.enable()
    const cpuStart = process.cpuUsage()
    const wallStart = performance.now()
    const latencies = await arriving(N, async (i) => {
      const asked = performance.now()
      const result = await sessions.requestSession({ campaignId: `c${i}`, caller })
      if (!result.ok) throw new Error(`start ${i} refused: ${result.error}`)
      return performance.now() - asked
    })
    const startMs = performance.now() - wallStart
    const startCpu = process.cpuUsage(cpuStart)
    loop.disable()
    await profiler?.(`${process.env.BENCH_CPU_PROFILE}/starts-${design}-${N}.cpuprofile`)

    progress(`starts answered in ${startMs.toFixed(0)} ms`)
    phase = 'qrs'
    // Counted from the events: on a loaded machine the first sessions may time out before the last
    // shows its QR; the run goes on (their scans find no QR).
    await until(() => shown.size === N, 'every QR')
    progress('every QR shown')
    const heapLive = heapUsed() - heapBefore
    phase = 'scansAndTimeouts'
    watching.unsubscribe()
    shown.clear()
    for (let i = 0; i < N / 2; i++) engine.scan(`c${i}`)
    await until(() => {
      const { byStatus, live } = sessions.stats()
      return byStatus.ready === live && byStatus.ready > 0
    }, 'half ready, half timed out')
    progress('half ready, half timed out')
    phase = 'shutdown'
    const shutdownStart = performance.now()
    await sessions.shutdown()
    const dropped = store?.health().dropped ?? 0
    await store?.close()
    const shutdownMs = performance.now() - shutdownStart
    if (engine.liveCount() !== 0) throw new Error('engines left after shutdown')

    const lags = batches.flatMap((batch) => batch.lagsMs)
    return {
      design,
      n: N,
      startMs: round(startMs),
      startUsPerSession: round((startMs * 1000) / N),
      startCpuUsPerSession: round((startCpu.user + startCpu.system) / N),
      answerP99Ms: round(percentile(latencies, 99)),
      loopDelayP99Ms: round(loop.percentile(99) / 1e6),
      loopDelayMaxMs: round(loop.max / 1e6),
      writes: store
        ? {
            lagP99Ms: round(percentile(lags, 99)),
            lagMaxMs: round(lags.reduce((max, lag) => Math.max(max, lag), 0)),
            lagP99MsByPhase: Object.fromEntries(
              PHASES.map((name) => [
                name,
                round(
                  percentile(
                    batches.filter((batch) => batch.phase === name).flatMap((b) => b.lagsMs),
                    99
                  )
                ),
              ])
            ) as Record<Phase, number>,
            batches: batches.length,
            rows: batches.reduce((sum, batch) => sum + batch.rows, 0),
            longestBatchMs: round(Math.max(0, ...batches.map((batch) => batch.durationMs))),
            dropped,
          }
        : null,
      heapPerSessionBytes: Math.round(heapLive / N),
      shutdownMs: round(shutdownMs),
      wallMs: round(performance.now() - wallStart),
    }
  } finally {
    await sessions.shutdown()
    await store?.close()
    await opened.close()
  }
}

/**
 * `BENCH_CPU_PROFILE=<folder>`: a CPU profile of the starts alone (open it in Chrome's DevTools).
 * Resolves with the function that stops it and writes the file.
 */
async function startProfiler(): Promise<(path: string) => Promise<void>> {
  const session = new Session()
  session.connect()
  const post = <T>(method: string) =>
    new Promise<T>((resolve, reject) =>
      session.post(method, (error, result) => (error ? reject(error) : resolve(result as T)))
    )
  await post('Profiler.enable')
  await post('Profiler.start')
  return async (path) => {
    const { profile } = await post<{ profile: object }>('Profiler.stop')
    session.disconnect()
    writeFileSync(path, JSON.stringify(profile))
  }
}

console.log(JSON.stringify(await run()))
