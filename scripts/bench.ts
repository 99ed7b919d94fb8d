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

const sizes = (process.env.BENCH_SIZES ?? '1000,10000,100000').split(',').map(Number)
/** Live sessions (at capacity) of the campaign-records benchmark. */
const campaignSizes = (process.env.BENCH_CAMPAIGN_SIZES ?? '1000,20000').split(',').map(Number)
/** `BENCH_ONLY=core`, `campaigns`, `http`, `webhooks` or `liveness` runs one part. */
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

console.log(`# qrvisor benchmarks`)
console.log(
  `machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${mib(totalmem())} RAM, Node ${process.version}`
)
console.log('')
if (only === undefined || only === 'core') runCoreBenchmark()
if (only === undefined || only === 'campaigns') runCampaignBenchmark()
if (only === undefined || only === 'http') runHttpBenchmark()
if (only === undefined || only === 'webhooks') runWebhooksBenchmark()
if (only === undefined || only === 'liveness') runLivenessBenchmark()

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
