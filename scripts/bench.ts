/**
 * `npm run bench`: the figures the issues ask for, each next to its baseline measured in the
 * same run. Each run happens in a fresh process (clean heap, no JIT carry-over between designs).
 *
 * @module
 */
import { execFileSync } from 'node:child_process'
import { cpus, totalmem } from 'node:os'
import type { CampaignFigures } from './bench/campaigns.ts'
import type { CoreFigures } from './bench/core.ts'
import type { CoreStoreFigures } from './bench/coreStore.ts'
import type { RestoreFigures } from './bench/restore.ts'
import { startPostgres, type PostgresServer } from '../test/store/postgresServer.ts'

const sizes = (process.env.BENCH_SIZES ?? '1000,10000,100000').split(',').map(Number)
/** Live sessions (at capacity) of the campaign-records benchmark. */
const campaignSizes = (process.env.BENCH_CAMPAIGN_SIZES ?? '1000,20000').split(',').map(Number)
/** Sessions started by the core benchmark with the store on. */
const storeSizes = (process.env.BENCH_STORE_SIZES ?? '10000').split(',').map(Number)
/** Linked campaigns restored at start, and the `RESTORE_CONCURRENCY` values to restore them at. */
const restoreCampaigns = Number(process.env.BENCH_RESTORE_CAMPAIGNS ?? '1000')
const restoreConcurrencies = (process.env.BENCH_RESTORE_CONCURRENCY ?? '100,1000')
  .split(',')
  .map(Number)
/** `BENCH_ONLY=core`, `store`, `restore`, `campaigns`, `http`, `webhooks`, `liveness` or `cluster` runs one part. */
const only = process.env.BENCH_ONLY

function runCore(design: string, n: number): CoreFigures {
  const out = execFileSync(
    process.execPath,
    [
      '--expose-gc',
      '--max-old-space-size=4096',
      '--import',
      'tsx',
      'scripts/bench/core.ts',
      design,
      String(n),
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }
  )
  return JSON.parse(out.trim().split('\n').at(-1)!) as CoreFigures
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`
const ms = (x: number) => `${x.toFixed(1)} ms`
const times = (x: number) => `${x.toFixed(2)}×`

console.log(`# qrvisor benchmarks`)
console.log(
  `machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${mib(totalmem())} RAM, Node ${process.version}`
)
console.log('')
if (only === undefined || only === 'core') runCoreBenchmark()
if (only === undefined || only === 'store') await runStoreBenchmark()
if (only === undefined || only === 'restore') runRestoreBenchmark()
if (only === undefined || only === 'campaigns') runCampaignBenchmark()
if (only === undefined || only === 'http') runHttpBenchmark()
if (only === undefined || only === 'webhooks') runWebhooksBenchmark()
if (only === undefined || only === 'liveness') runLivenessBenchmark()
if (only === undefined || only === 'cluster') runClusterBenchmark()

function runCoreBenchmark(): void {
  console.log(
    '## Core: start N sessions, half to ready, half time out, shut down (simulated engine)'
  )
  console.log('')
  console.log(
    '| N | design | wall | start total | per start | heap per live session | heap live | shutdown |'
  )
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |')
  const results: CoreFigures[] = []
  for (const n of sizes) {
    for (const design of ['qrvisor', 'seed-map']) {
      const r = runCore(design, n)
      results.push(r)
      console.log(
        `| ${n.toLocaleString('en')} | ${design} | ${(r.wallMs / 1000).toFixed(1)} s | ${r.startMs.toFixed(0)} ms | ${r.startUsPerSession.toFixed(1)} µs | ${kib(r.heapPerSessionBytes)} | ${mib(r.heapLiveBytes)} | ${r.shutdownMs.toFixed(0)} ms |`
      )
    }
  }
  const ours = results.filter((r) => r.design === 'qrvisor')
  const first = ours[0]
  const last = ours.at(-1)
  if (first && last && first !== last) {
    console.log('')
    console.log('Targets:')
    const ratio = last.startUsPerSession / first.startUsPerSession
    console.log(
      `- per-session start at ${last.n.toLocaleString('en')} vs ${first.n.toLocaleString('en')}: ${ratio.toFixed(2)}× (target ≤ 1.5×) ${ratio <= 1.5 ? 'met' : 'MISSED'}`
    )
    const worstHeap = Math.max(...ours.map((r) => r.heapPerSessionBytes))
    console.log(
      `- heap per live session: at most ${kib(worstHeap)} (target ≤ 8 KiB) ${worstHeap <= 8192 ? 'met' : 'MISSED'}`
    )
    console.log(
      `- heap with ${last.n.toLocaleString('en')} live sessions: ${mib(last.heapLiveBytes)} (target < 1 GiB) ${last.heapLiveBytes < 1024 ** 3 ? 'met' : 'MISSED'}`
    )
  }
}

/** The last JSON line a benchmark process printed. */
function runJson<T>(args: string[], env: NodeJS.ProcessEnv = process.env): T {
  const out = execFileSync(process.execPath, args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    env,
  })
  return JSON.parse(out.trim().split('\n').at(-1)!) as T
}

/**
 * The core benchmark with the durable store on (issue 11): in memory (the baseline), SQLite, and
 * PostgreSQL when a server is at hand (`BENCH_DATABASE_URL`, where the run may create and drop a
 * database, or a throwaway cluster from the binaries under /usr/lib/postgresql).
 */
async function runStoreBenchmark(): Promise<void> {
  console.log('')
  console.log(
    '## Core with the store on: start N sessions (one per macrotask), half to ready, half time out, shut down'
  )
  console.log('')
  let postgres: PostgresServer | undefined
  const previousUrl = process.env.TEST_DATABASE_URL
  if (process.env.BENCH_DATABASE_URL) process.env.TEST_DATABASE_URL = process.env.BENCH_DATABASE_URL
  try {
    postgres = await startPostgres()
  } catch (error) {
    console.log(`PostgreSQL skipped: ${(error as Error).message.split('\n')[0]}`)
    console.log('')
  }
  process.env.TEST_DATABASE_URL = previousUrl
  const designs = postgres ? ['memory', 'sqlite', 'postgres'] : ['memory', 'sqlite']
  const results: CoreStoreFigures[] = []
  try {
    console.log(
      '| N | store | per start (wall) | CPU per start | answer p99 | loop delay p99 (max) | write lag p99: starts / QRs / scans and timeouts / shutdown; whole run (max) | longest batch | heap per live session | shutdown |'
    )
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for (const n of storeSizes) {
      for (const design of designs) {
        const env = postgres
          ? { ...process.env, TEST_DATABASE_URL: postgres.adminUrl }
          : process.env
        const r = runJson<CoreStoreFigures>(
          [
            '--expose-gc',
            '--max-old-space-size=4096',
            '--import',
            'tsx',
            'scripts/bench/coreStore.ts',
            design,
            String(n),
          ],
          env
        )
        results.push(r)
        const w = r.writes
        console.log(
          `| ${n.toLocaleString('en')} | ${design} | ${r.startUsPerSession.toFixed(1)} µs | ${r.startCpuUsPerSession.toFixed(1)} µs | ${ms(r.answerP99Ms)} | ${ms(r.loopDelayP99Ms)} (${ms(r.loopDelayMaxMs)}) | ${w ? `${ms(w.lagP99MsByPhase.starts)} / ${ms(w.lagP99MsByPhase.qrs)} / ${ms(w.lagP99MsByPhase.scansAndTimeouts)} / ${ms(w.lagP99MsByPhase.shutdown)}; ${ms(w.lagP99Ms)} (${ms(w.lagMaxMs)})` : '–'} | ${w ? ms(w.longestBatchMs) : '–'} | ${kib(r.heapPerSessionBytes)} | ${r.shutdownMs.toFixed(0)} ms |`
        )
      }
    }
  } finally {
    await postgres?.stop()
  }
  console.log('')
  console.log('Targets (the in-memory run of the same N is the baseline):')
  for (const r of results) {
    if (r.design === 'memory') continue
    const base = results.find((b) => b.design === 'memory' && b.n === r.n)!
    const wall = r.startUsPerSession / base.startUsPerSession
    const cpu = r.startCpuUsPerSession / base.startCpuUsPerSession
    const n = r.n.toLocaleString('en')
    console.log(
      `- ${r.design}, ${n}: per start ${times(wall)} of in-memory in wall time, ${times(cpu)} in CPU (target ≤ 2×) ${wall <= 2 ? 'met' : 'MISSED'}; loop delay p99 ${ms(r.loopDelayP99Ms)} beside ${ms(base.loopDelayP99Ms)} (target < 20 ms) ${r.loopDelayP99Ms < 20 ? 'met' : 'MISSED'}; write lag p99 ${ms(r.writes!.lagP99Ms)} (STORE_WRITE_LAG_MS 50 ms), ${r.writes!.dropped} changes dropped`
    )
  }
}

/** The restore of linked campaigns at start (issue 11), beside a start on an empty store. */
function runRestoreBenchmark(): void {
  console.log('')
  console.log(
    `## Restore: ${restoreCampaigns.toLocaleString('en')} linked simulated campaigns at start (SQLite, the whole server)`
  )
  console.log('')
  const restore = (n: number, concurrency: number) =>
    runJson<RestoreFigures>([
      '--import',
      'tsx',
      'scripts/bench/restore.ts',
      String(n),
      String(concurrency),
    ])
  const baseline = restore(0, restoreConcurrencies[0]!)
  const runs = restoreConcurrencies.map((c) => restore(restoreCampaigns, c))
  console.log(
    '| campaigns | RESTORE_CONCURRENCY | first answered request | all ready (pacing floor) | loop delay p99 (max) | /healthz p99 (max) |'
  )
  console.log('| --- | --- | --- | --- | --- | --- |')
  for (const r of [baseline, ...runs]) {
    const ready =
      r.allReadyMs === null
        ? '–'
        : `${(r.allReadyMs / 1000).toFixed(2)} s (${(r.floorMs / 1000).toFixed(1)} s)`
    console.log(
      `| ${r.campaigns === 0 ? '0 (baseline: empty store)' : r.campaigns.toLocaleString('en')} | ${r.campaigns === 0 ? '–' : r.concurrency} | ${ms(r.firstAnswerMs)} | ${ready} | ${ms(r.loopDelayP99Ms)} (${ms(r.loopDelayMaxMs)}) | ${ms(r.healthzP99Ms)} (${ms(r.healthzMaxMs)}) |`
    )
  }
  console.log('')
  console.log(
    'Targets (RESTORE_CONCURRENCY defaults to 100 for the simulated engine, 2 for wwebjs):'
  )
  for (const r of runs) {
    console.log(
      `- at ${r.concurrency}: loop delay p99 ${ms(r.loopDelayP99Ms)} beside ${ms(baseline.loopDelayP99Ms)} (target < 20 ms) ${r.loopDelayP99Ms < 20 ? 'met' : 'MISSED'}; first answered request after ${ms(r.firstAnswerMs)} beside ${ms(baseline.firstAnswerMs)} (target < 1 s) ${r.firstAnswerMs < 1000 ? 'met' : 'MISSED'}`
    )
  }
}

/** Refused starts keep nothing, and the campaign list costs a page, not every campaign (issue 8). */
function runCampaignBenchmark(): void {
  console.log('')
  console.log('## Campaign records: 50,000 starts refused at capacity, and the paged list')
  console.log('')
  const runs = campaignSizes.map((n) => {
    const out = execFileSync(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', 'scripts/bench/campaigns.ts', String(n)],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }
    )
    return JSON.parse(out.trim().split('\n').at(-1)!) as CampaignFigures
  })
  console.log(
    '| live sessions (at capacity) | heap before (baseline) | heap after 50,000 refusals | growth | campaigns before → after | target (growth ≤ 2 MB) |'
  )
  console.log('| --- | --- | --- | --- | --- | --- |')
  for (const r of runs) {
    const growth = r.heapAfterBytes - r.heapBeforeBytes
    const met = growth <= 2 * 1024 * 1024 && r.campaignsAfter === r.campaignsBefore
    console.log(
      `| ${r.n.toLocaleString('en')} | ${mib(r.heapBeforeBytes)} | ${mib(r.heapAfterBytes)} | ${kib(growth)} | ${r.campaignsBefore.toLocaleString('en')} → ${r.campaignsAfter.toLocaleString('en')} | ${met ? 'met' : 'MISSED'} |`
    )
  }
  console.log('')
  console.log(
    '| remembered campaigns | first page of 100 | a middle page (cursor) | one owner of 10, middle page | every view (the unpaged answer) |'
  )
  console.log('| --- | --- | --- | --- | --- |')
  const us = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(1)} ms` : `${x.toFixed(0)} µs`)
  for (const r of runs) {
    console.log(
      `| ${r.n.toLocaleString('en')} | ${us(r.firstPageUs)} | ${us(r.middlePageUs)} | ${us(r.ownerPageUs)} | ${us(r.everyViewUs)} |`
    )
  }
}

/** HTTP status route and QR delivery (issue 3): scripts/bench-http.ts prints its own tables. */
function runHttpBenchmark(): void {
  console.log('')
  execFileSync(process.execPath, ['--import', 'tsx', 'scripts/bench-http.ts'], { stdio: 'inherit' })
}

/** Webhooks: a burst of 1,000 events, and a receiver down then back (`BENCH_WEBHOOKS_FULL=1`: 60 s). */
function runWebhooksBenchmark(): void {
  console.log('')
  console.log('## Webhooks: 1,000 events in a burst; a receiver down, then back')
  console.log('')
  const args = process.env.BENCH_WEBHOOKS_FULL ? [] : ['--quick']
  execFileSync(process.execPath, ['--import', 'tsx', 'scripts/bench/webhooks.ts', ...args], {
    stdio: 'inherit',
  })
}

function runLivenessBenchmark(): void {
  console.log('')
  console.log('## Liveness: 1,000 ready sessions probed; a frozen wwebjs page to unresponsive')
  console.log('')
  const args = process.env.BENCH_LIVENESS_FULL ? [] : ['--quick']
  execFileSync(process.execPath, ['--import', 'tsx', 'scripts/bench/liveness.ts', ...args], {
    stdio: 'inherit',
  })
}

/**
 * The cluster (issue 12): three node processes on a throwaway PostgreSQL; scripts/bench/cluster.ts
 * prints its own tables (`BENCH_CLUSTER_DEFAULT_TTL=1` adds a failover at the default lease).
 */
function runClusterBenchmark(): void {
  console.log('')
  execFileSync(process.execPath, ['--import', 'tsx', 'scripts/bench/cluster.ts'], {
    stdio: 'inherit',
  })
}
