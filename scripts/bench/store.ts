/**
 * The campaign store's costs: N claims (durable, grouped commits), then N session writes through
 * the write-behind queue, on SQLite and on PostgreSQL (`TEST_DATABASE_URL`, or a throwaway cluster
 * from the server binaries under /usr/lib/postgresql). Each operation arrives in its own
 * macrotask, as requests do. Prints a Markdown table and one JSON line per store.
 *
 *   node --import tsx scripts/bench/store.ts [sqlite|postgres|both] [N]
 *
 * Per op: wall time of the phase / N (claims overlap, so this is the throughput cost). Claim p99:
 * from the call until its commit resolved it. Write lag p99: from a record's first unwritten change
 * until its batch committed. Loop delay p99: `monitorEventLoopDelay` during the phase. Longest
 * batch: the longest write transaction (for SQLite, how long the loop was blocked at most).
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { openStore, type BatchReport, type CampaignStore } from '../../src/store/index.ts'
import { startPostgres } from '../../test/store/postgresServer.ts'

const [which = 'both', nText = '10000'] = process.argv.slice(2)
const N = Number(nText)

interface PhaseFigures {
  perOpUs: number
  latencyP99Ms: number
  loopDelayP99Ms: number
  loopDelayMaxMs: number
}

interface StoreFigures {
  store: string
  n: number
  /** The same arrivals doing nothing: the loop delay the machine causes by itself. */
  baseline: PhaseFigures
  claims: PhaseFigures
  writes: PhaseFigures & { lagP99Ms: number; batches: number; longestBatchMs: number }
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/** Runs `op(i)` for i < N, each in its own macrotask; resolves when all have settled. */
async function arriving(op: (i: number) => Promise<void> | void): Promise<void> {
  const pending: Array<Promise<void> | void> = []
  await new Promise<void>((resolve) => {
    let i = 0
    const next = () => {
      pending.push(op(i++))
      if (i < N) setImmediate(next)
      else resolve()
    }
    setImmediate(next)
  })
  await Promise.all(pending)
}

async function measure(
  phase: () => Promise<number[]>
): Promise<PhaseFigures & { latencies: number[] }> {
  const loop = monitorEventLoopDelay({ resolution: 1 })
  loop.enable()
  const started = performance.now()
  const latencies = await phase()
  const wall = performance.now() - started
  loop.disable()
  return {
    perOpUs: (wall * 1000) / N,
    latencyP99Ms: percentile(latencies, 99),
    loopDelayP99Ms: loop.percentile(99) / 1e6,
    loopDelayMaxMs: loop.max / 1e6,
    latencies,
  }
}

async function bench(
  name: string,
  open: (onBatch: (r: BatchReport) => void) => Promise<CampaignStore>
) {
  const batches: BatchReport[] = []
  const store = await open((report) => batches.push(report))
  try {
    // Warm-up (JIT, prepared paths), not measured.
    for (let i = 0; i < 200; i++) await store.claim(`warm${i}`, 'bench')
    const baseline = await measure(async () => {
      await arriving(() => undefined)
      return []
    })

    const claims = await measure(async () => {
      const latencies: number[] = []
      await arriving(async (i) => {
        const started = performance.now()
        const { created } = await store.claim(`c${i}`, `user${i % 100}`)
        if (!created) throw new Error(`c${i} was already claimed`)
        latencies.push(performance.now() - started)
      })
      return latencies
    })

    batches.length = 0
    const writes = await measure(async () => {
      const enqueueCosts: number[] = []
      const now = Date.now()
      await arriving((i) => {
        const started = performance.now()
        store.saveSession({
          sessionId: `s${i}`,
          campaignId: `c${i}`,
          status: 'awaitingScan',
          reason: null,
          detail: null,
          history: [
            { status: 'initializing', at: now },
            { status: 'awaitingScan', at: now + 50 },
          ],
          startedAt: now,
          updatedAt: now + 50,
          endedAt: null,
          lastSeenAlive: null,
        })
        enqueueCosts.push(performance.now() - started)
      })
      while (store.health().queued > 0) await new Promise((resolve) => setTimeout(resolve, 1))
      return enqueueCosts
    })
    const figures: StoreFigures = {
      store: name,
      n: N,
      baseline: strip(baseline),
      claims: strip(claims),
      writes: {
        ...strip(writes),
        lagP99Ms: percentile(
          batches.flatMap((batch) => batch.lagsMs),
          99
        ),
        batches: batches.length,
        longestBatchMs: Math.max(...batches.map((batch) => batch.durationMs)),
      },
    }
    const written = batches.reduce((sum, batch) => sum + batch.rows, 0)
    if (written !== N) throw new Error(`${written} of ${N} session writes committed`)
    return figures
  } finally {
    await store.close()
  }
}

function strip<T extends { latencies: number[] }>(figures: T): Omit<T, 'latencies'> {
  const { latencies: _latencies, ...rest } = figures
  return rest
}

const results: StoreFigures[] = []
if (which === 'sqlite' || which === 'both') {
  const dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-bench-store-'))
  try {
    results.push(
      await bench('sqlite', (onBatch) => openStore({ dataDir, pruneIntervalMs: 0, onBatch }))
    )
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
}
if (which === 'postgres' || which === 'both') {
  const server = await startPostgres()
  try {
    const databaseUrl = await server.createDatabase()
    results.push(
      await bench('postgres', (onBatch) =>
        openStore({ dataDir: tmpdir(), databaseUrl, pruneIntervalMs: 0, onBatch })
      )
    )
  } finally {
    await server.stop()
  }
}

const ms = (value: number) => `${value.toFixed(1)} ms`
console.log(
  `| store | N | loop p99 (max), no store | claim: per op | claim p99 | loop p99 (max) | write: enqueue per op | write lag p99 | loop p99 (max) | longest batch |`
)
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
for (const r of results) {
  console.log(
    `| ${r.store} | ${r.n.toLocaleString('en')} | ${ms(r.baseline.loopDelayP99Ms)} (${ms(r.baseline.loopDelayMaxMs)}) | ${r.claims.perOpUs.toFixed(1)} µs | ${ms(r.claims.latencyP99Ms)} | ${ms(r.claims.loopDelayP99Ms)} (${ms(r.claims.loopDelayMaxMs)}) | ${(r.writes.latencyP99Ms * 1000).toFixed(1)} µs p99, ${r.writes.perOpUs.toFixed(1)} µs wall | ${ms(r.writes.lagP99Ms)} | ${ms(r.writes.loopDelayP99Ms)} (${ms(r.writes.loopDelayMaxMs)}) | ${ms(r.writes.longestBatchMs)} |`
  )
}
for (const r of results) console.log(JSON.stringify(r))
