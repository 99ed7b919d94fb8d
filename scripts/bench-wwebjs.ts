/**
 * Measures the wwebjs engine with a real Chromium, offline (npx tsx scripts/bench-wwebjs.ts):
 *
 * - memory per session: PSS of the session's whole process tree (from /proc/<pid>/smaps_rollup),
 *   idle on a stand-in for web.whatsapp.com, for one session alone and for several at once;
 * - teardown: time from the stop request to the last process of the session gone (stop()
 *   resolves only then, and this script checks /proc itself), p50/p99 over 20 runs, and with
 *   the browser frozen by SIGSTOP.
 *
 * Results go to stdout; docs/benchmarks/wwebjs.md records them with the machine.
 */
import { execFileSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { findSessionProcesses } from '../src/engines/wwebjs/chromium.ts'
import type { EngineSession } from '../src/engines/engine.ts'
import { readPssBytes } from '../src/engines/wwebjs/processes.ts'
import { createWwebjsEngine } from '../src/engines/wwebjs/index.ts'
import {
  chromiumForTests,
  eventually,
  killEverythingUnder,
  makeDataDir,
  markedBrowser,
  processesOf,
  startStandIn,
  type StandIn,
} from '../test/engines/support.ts'

const MiB = 1024 * 1024
const chromePath = chromiumForTests()
const dataDir = makeDataDir()
const settleMs = Number(process.env.BENCH_SETTLE_MS ?? 5_000)
const stopRuns = Number(process.env.BENCH_STOP_RUNS ?? 20)
const frozenRuns = Number(process.env.BENCH_FROZEN_RUNS ?? 5)
const fleetSize = Number(process.env.BENCH_FLEET ?? 5)
const productionDestroyTimeoutMs = 10_000
const killTimeoutMs = 5_000

let counter = 0

function percentile(sorted: number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)
  return sorted[Math.max(0, index)] ?? NaN
}

function summary(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b)
  const mean = sorted.reduce((sum, value) => sum + value, 0) / sorted.length
  return `n=${sorted.length} min=${sorted[0]} p50=${percentile(sorted, 50)} p99=${percentile(sorted, 99)} max=${sorted.at(-1)} mean=${mean.toFixed(0)}`
}

function sessionPss(sessionId: string): { bytes: number; processes: number } {
  const processes = findSessionProcesses(sessionId)
  return {
    bytes: processes.reduce((sum, member) => sum + readPssBytes(member.pid), 0),
    processes: processes.length,
  }
}

async function launch(
  standIn: StandIn,
  destroyTimeoutMs: number
): Promise<{ session: EngineSession; sessionId: string }> {
  const engine = createWwebjsEngine({
    dataDir,
    chromePath,
    destroyTimeoutMs,
    killTimeoutMs,
    extraChromiumArgs: standIn.chromiumArgs,
  })
  counter += 1
  const sessionId = `bench-${counter}`
  const session = engine.createSession({
    campaignId: `bench-${counter}`,
    sessionId,
    onEvent: (event) => {
      if (event.type === 'terminated') console.error(`unexpected: ${event.kind} ${event.detail}`)
    },
  })
  const before = standIn.pageRequests()
  session.start()
  const up = await eventually(() => standIn.pageRequests() > before, 30_000)
  if (!up) throw new Error('the browser never requested the stand-in page')
  return { session, sessionId }
}

/** Stops the session; returns ms from the request until /proc shows none of its processes. */
async function timedStop(session: EngineSession, sessionId: string): Promise<number> {
  const group = markedBrowser(sessionId)?.pgid
  const requestedAt = performance.now()
  await session.stop()
  const gone = await eventually(
    () => processesOf(sessionId, dataDir, group === undefined ? [] : [group]).length === 0,
    killTimeoutMs,
    1
  )
  const elapsed = performance.now() - requestedAt
  if (!gone) throw new Error(`processes of ${sessionId} survived stop()`)
  return Math.round(elapsed)
}

async function main(): Promise<void> {
  const blank = await startStandIn('blank')
  try {
    console.log(
      `chromium: ${execFileSync(chromePath, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] })
        .toString()
        .trim()}`
    )
    console.log(`nproc: ${execFileSync('nproc').toString().trim()}`)
    console.log(execFileSync('free', ['-h']).toString())

    // Memory: one session alone, then a fleet at once (shared libraries split their pages).
    const single = await launch(blank, productionDestroyTimeoutMs)
    await new Promise((resolve) => setTimeout(resolve, settleMs))
    const alone = sessionPss(single.sessionId)
    console.log(
      `memory, 1 session idle on the stand-in: PSS ${(alone.bytes / MiB).toFixed(0)} MiB in ${alone.processes} processes`
    )
    await single.session.stop()

    const fleet = []
    for (let index = 0; index < fleetSize; index += 1)
      fleet.push(await launch(blank, productionDestroyTimeoutMs))
    await new Promise((resolve) => setTimeout(resolve, settleMs))
    const perSession = fleet.map(({ sessionId }) => sessionPss(sessionId))
    const total = perSession.reduce((sum, { bytes }) => sum + bytes, 0)
    console.log(
      `memory, ${fleetSize} sessions idle at once: PSS ${(total / MiB).toFixed(0)} MiB total, ` +
        `${(total / fleetSize / MiB).toFixed(0)} MiB per session (${perSession.map(({ bytes }) => (bytes / MiB).toFixed(0)).join(', ')})`
    )
    await Promise.all(fleet.map(({ session }) => session.stop()))

    // Teardown of a healthy browser.
    const healthy: number[] = []
    for (let run = 0; run < stopRuns; run += 1) {
      const { session, sessionId } = await launch(blank, productionDestroyTimeoutMs)
      healthy.push(await timedStop(session, sessionId))
    }
    console.log(`stop → last process gone, healthy browser (ms): ${summary(healthy)}`)

    // Teardown of a frozen browser, with the production destroy timeout.
    const frozen: number[] = []
    for (let run = 0; run < frozenRuns; run += 1) {
      const { session, sessionId } = await launch(blank, productionDestroyTimeoutMs)
      const group = markedBrowser(sessionId)?.pgid
      if (group === undefined) throw new Error('no marked browser')
      process.kill(-group, 'SIGSTOP')
      frozen.push(await timedStop(session, sessionId))
    }
    console.log(
      `stop → last process gone, frozen browser, destroyTimeoutMs=${productionDestroyTimeoutMs} (ms): ${summary(frozen)}`
    )
  } finally {
    killEverythingUnder(dataDir)
    await blank.close()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

await main()
