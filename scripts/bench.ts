/**
 * `npm run bench`: the figures the issues ask for, each next to its baseline measured in the
 * same run. Each run happens in a fresh process (clean heap, no JIT carry-over between designs).
 *
 * @module
 */
import { execFileSync } from 'node:child_process'
import { cpus, totalmem } from 'node:os'
import type { CoreFigures } from './bench/core.ts'

const sizes = (process.env.BENCH_SIZES ?? '1000,10000,100000').split(',').map(Number)

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
console.log('## Core: start N sessions, half to ready, half time out, shut down (simulated engine)')
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
