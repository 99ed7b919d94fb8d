/**
 * The liveness probe's costs (issue 15):
 *
 * 1. 1,000 ready simulated sessions probed every interval, in real time: the event loop's delay
 *    p99 while they are probed (target: under 20 ms), and the CPU per probe (the CPU of the same
 *    window with probes, minus a window of the same sessions with none, over the probes made).
 * 2. With the wwebjs engine (a real Chromium on the local stand-in for WhatsApp Web): the time
 *    from a frozen page (its renderer stopped by SIGSTOP, the browser up) to the session failed
 *    `unresponsive`, and to its engine gone (target: detection ≤ interval × misses + timeout).
 *
 * `--quick` (what `npm run bench` runs) probes every 3 s (simulated) and 2 s (wwebjs); without
 * it, the defaults: every 30 s, a 10 s timeout, 2 misses.
 *
 *   node --import tsx scripts/bench/liveness.ts [--quick] [--skip-wwebjs]
 *
 * @module
 */
import { rmSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createSimulatedEngine } from '../../src/engines/simulated.ts'
import { createWwebjsEngine } from '../../src/engines/wwebjs/index.ts'
import { DEFAULT_LIVENESS, type LivenessSettings } from '../../src/session/liveness.ts'
import { createSessionService, type SessionTimeouts } from '../../src/session/service.ts'
import {
  chromiumForTests,
  killEverythingUnder,
  makeDataDir,
  markedBrowser,
  processesOf,
  startStandIn,
} from '../../test/engines/support.ts'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const N = 1_000
const owner = { userId: 'bench', admin: false }
const TIMEOUTS: SessionTimeouts = {
  initMs: 30_000,
  scanMs: 30_000,
  authMs: 30_000,
  destroyMs: 2_000,
  killMs: 2_000,
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`)
    await sleep(10)
  }
}

/** 1,000 ready simulated sessions for one window of `windowMs`; probes every `intervalMs`. */
async function simulatedWindow(liveness: LivenessSettings, windowMs: number) {
  const engine = createSimulatedEngine({ qrDelayMs: 10, authDelayMs: 10 })
  const sessions = createSessionService({ engine, timeouts: TIMEOUTS, liveness, maxSessions: N })
  for (let i = 0; i < N; i++) {
    engine.setBehaviour(`c${i}`, { startup: 'restored' })
    sessions.requestSession({ campaignId: `c${i}`, caller: owner })
  }
  await until(() => sessions.stats().byStatus.ready === N, 30_000, `${N} sessions ready`)
  const probesBefore = engine.counters().probes
  const delay = monitorEventLoopDelay({ resolution: 1 })
  delay.enable()
  const cpuBefore = process.cpuUsage()
  await sleep(windowMs)
  const cpu = process.cpuUsage(cpuBefore)
  delay.disable()
  const probes = engine.counters().probes - probesBefore
  await sessions.shutdown()
  await engine.close()
  return {
    probes,
    cpuUs: cpu.user + cpu.system,
    loopDelayP99Ms: delay.percentile(99) / 1e6,
    loopDelayMaxMs: delay.max / 1e6,
  }
}

async function simulated() {
  const liveness = quick ? { intervalMs: 3_000, timeoutMs: 1_000, misses: 2 } : DEFAULT_LIVENESS
  const windowMs = 2 * liveness.intervalMs
  // The baseline: the same sessions, no probe within the window.
  const idle = await simulatedWindow({ ...liveness, intervalMs: 1_000 * windowMs }, windowMs)
  const probed = await simulatedWindow(liveness, windowMs)
  return {
    part: `${N} ready simulated sessions, probed every ${liveness.intervalMs} ms, ${windowMs} ms window`,
    probes: probed.probes,
    loopDelayP99Ms: Number(probed.loopDelayP99Ms.toFixed(2)),
    loopDelayMaxMs: Number(probed.loopDelayMaxMs.toFixed(2)),
    baselineLoopDelayP99Ms: Number(idle.loopDelayP99Ms.toFixed(2)),
    cpuPerProbeUs: Number(((probed.cpuUs - idle.cpuUs) / Math.max(1, probed.probes)).toFixed(1)),
    baselineProbes: idle.probes,
  }
}

async function wwebjs() {
  const liveness = quick ? { intervalMs: 2_000, timeoutMs: 1_000, misses: 2 } : DEFAULT_LIVENESS
  const runs = quick ? 3 : 1
  const chromePath = chromiumForTests()
  const dataDir = makeDataDir()
  const whatsapp = await startStandIn('whatsapp')
  // WhatsApp knows the device: pages load linked and come to ready without a scan.
  whatsapp.rememberDevice()
  const engine = createWwebjsEngine({
    dataDir,
    chromePath,
    destroyTimeoutMs: TIMEOUTS.destroyMs,
    killTimeoutMs: TIMEOUTS.killMs,
    extraChromiumArgs: whatsapp.chromiumArgs,
  })
  // No restart: each run measures one ending.
  const sessions = createSessionService({
    engine,
    timeouts: TIMEOUTS,
    liveness,
    maxSessions: 2,
    restartPolicy: { maxRestarts: 0 },
  })
  const detected: number[] = []
  const gone: number[] = []
  try {
    for (let run = 0; run < runs; run++) {
      const campaignId = `frozen-${run}`
      const answer = sessions.requestSession({ campaignId, caller: owner })
      if (!answer.ok) throw new Error(answer.error)
      const sessionId = answer.view.sessionId!
      const view = () => sessions.getCampaign(campaignId)
      await until(() => view().status === 'ready', 30_000, 'ready')
      // Freeze at a random point of the probe interval.
      await sleep(Math.random() * liveness.intervalMs)
      const group = markedBrowser(sessionId)!.pgid
      const renderers = processesOf(sessionId, dataDir, [group]).filter((p) =>
        p.cmdline.includes('--type=renderer')
      )
      const frozenAt = Date.now()
      for (const renderer of renderers) process.kill(renderer.pid, 'SIGSTOP')
      const bound = liveness.intervalMs * liveness.misses + liveness.timeoutMs
      await until(() => view().reason === 'unresponsive', bound + 5_000, 'unresponsive')
      detected.push(Date.now() - frozenAt)
      await until(() => view().history.at(-1)?.status === 'cleaned', 10_000, 'cleaned')
      gone.push(Date.now() - frozenAt)
    }
  } finally {
    await sessions.shutdown()
    await engine.close()
    await whatsapp.close()
    killEverythingUnder(dataDir)
    rmSync(dataDir, { recursive: true, force: true })
  }
  const bound = liveness.intervalMs * liveness.misses + liveness.timeoutMs
  return {
    part: `wwebjs, renderer frozen by SIGSTOP, probed every ${liveness.intervalMs} ms (timeout ${liveness.timeoutMs} ms, ${liveness.misses} misses), ${runs} runs`,
    toUnresponsiveMs: detected,
    toEngineGoneMs: gone,
    boundMs: bound,
    met: detected.every((ms) => ms <= bound),
  }
}

console.log(JSON.stringify(await simulated()))
if (!args.includes('--skip-wwebjs')) console.log(JSON.stringify(await wwebjs()))
