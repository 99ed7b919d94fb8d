/**
 * One run of the core benchmark, in its own process (started by scripts/bench.ts):
 * start N sessions with the simulated engine, take half to ready and let half time out, then
 * shut down. Prints one JSON line of figures.
 *
 *   node --expose-gc --import tsx scripts/bench/core.ts <qrvisor|seed-map> <N>
 *
 * `seed-map` is the seed's design doing the same work over the same engine: a Map of sessions,
 * a setTimeout per session, cleanup by hand.
 *
 * @module
 */
import { createSimulatedEngine, type SimulatedEngine } from '../../src/engines/simulated.ts'
import type { EngineSession } from '../../src/engines/engine.ts'
import { createSessionService } from '../../src/session/service.ts'
import { heapUsed, round, until } from './support.ts'

const [design = 'qrvisor', nText = '1000'] = process.argv.slice(2)
const N = Number(nText)
// Long enough for every session of the run to show its QR before the first scan deadline.
const SCAN_MS = 3_000 + N / 2
const QR_DELAY_MS = 50
const WARM_UP = 300
const AUTH_DELAY_MS = 50

export interface CoreFigures {
  design: string
  n: number
  startMs: number
  startUsPerSession: number
  heapPerSessionBytes: number
  heapLiveBytes: number
  shutdownMs: number
  wallMs: number
}

function engine(): SimulatedEngine {
  return createSimulatedEngine({
    qrDelayMs: QR_DELAY_MS,
    authDelayMs: AUTH_DELAY_MS,
    destroyDelayMs: 5,
    destroyTimeoutMs: 10_000,
    killTimeoutMs: 5_000,
  })
}

async function runQrvisor(): Promise<CoreFigures> {
  const sim = engine()
  const sessions = createSessionService({
    engine: sim,
    timeouts: { initMs: 60_000, scanMs: SCAN_MS, authMs: 60_000, destroyMs: 10_000, killMs: 5_000 },
    maxSessions: N,
  })
  const caller = { userId: 'bench', admin: false }
  // Warm-up, as for the baseline: one-time costs (JIT, XState's memoised transition tables) are
  // not costs of a session.
  for (let i = 0; i < WARM_UP; i++) sessions.requestSession({ campaignId: `warm${i}`, caller })
  await until(() => sessions.stats().byStatus.awaitingScan === WARM_UP, 'warm-up QRs')
  await Promise.all(Array.from({ length: WARM_UP }, (_, i) => sessions.cleanupSession(`warm${i}`)))
  const heapBefore = heapUsed()
  const wallStart = performance.now()
  for (let i = 0; i < N; i++) {
    const result = sessions.requestSession({ campaignId: `c${i}`, caller })
    if (!result.ok) throw new Error(`start ${i} refused: ${result.error}`)
  }
  const startMs = performance.now() - wallStart
  await until(() => sessions.stats().byStatus.awaitingScan === N, 'every QR')
  const heapLive = heapUsed() - heapBefore
  for (let i = 0; i < N / 2; i++) sim.scan(`c${i}`)
  await until(() => {
    const { byStatus, live } = sessions.stats()
    return byStatus.ready === N / 2 && live === N / 2
  }, 'half ready, half timed out')
  const shutdownStart = performance.now()
  await sessions.shutdown()
  const shutdownMs = performance.now() - shutdownStart
  if (sim.liveCount() !== 0) throw new Error('engines left after shutdown')
  return figures('qrvisor', startMs, heapLive, shutdownMs, performance.now() - wallStart)
}

/** The seed's whatsappService: a Map of { client, userId, status, timeout }. */
async function runSeedMap(): Promise<CoreFigures> {
  const sim = engine()
  interface Entry {
    client: EngineSession
    userId: string
    status: 'pending' | 'qr' | 'ready'
    timeout: ReturnType<typeof setTimeout>
  }
  const clients = new Map<string, Entry>()
  const stopping = new Set<Promise<unknown>>()
  const cleanupSession = (campaignId: string) => {
    const entry = clients.get(campaignId)
    if (!entry) return
    clearTimeout(entry.timeout)
    clients.delete(campaignId)
    const stopped = entry.client.stop()
    stopping.add(stopped)
    void stopped.then(() => stopping.delete(stopped))
  }
  // The same warm-up as qrvisor's.
  for (let i = 0; i < WARM_UP; i++) {
    const warm = sim.createSession({
      campaignId: `warm${i}`,
      sessionId: `warm${i}`,
      onEvent: () => {},
    })
    warm.start()
    clients.set(`warm${i}`, {
      client: warm,
      userId: 'bench',
      status: 'pending',
      timeout: setTimeout(() => {}, 0),
    })
  }
  await new Promise((resolve) => setTimeout(resolve, QR_DELAY_MS * 2))
  for (let i = 0; i < WARM_UP; i++) cleanupSession(`warm${i}`)
  await Promise.all([...stopping])
  const heapBefore = heapUsed()
  const wallStart = performance.now()
  for (let i = 0; i < N; i++) {
    const campaignId = `c${i}`
    cleanupSession(campaignId)
    const client = sim.createSession({
      campaignId,
      sessionId: campaignId,
      onEvent: (event) => {
        const entry = clients.get(campaignId)
        if (!entry) return
        if (event.type === 'qr') {
          // The seed clears its init timeout on the QR and never bounds the scan. To do the same
          // work as qrvisor, it arms a scan timeout at the first QR (not at rotations, which
          // would push the deadline back forever).
          if (entry.status === 'pending') {
            clearTimeout(entry.timeout)
            entry.timeout = setTimeout(() => cleanupSession(campaignId), SCAN_MS)
          }
          entry.status = 'qr'
        } else if (event.type === 'ready') {
          entry.status = 'ready'
          clearTimeout(entry.timeout)
        }
      },
    })
    const timeout = setTimeout(() => cleanupSession(campaignId), 60_000)
    clients.set(campaignId, { client, userId: 'bench', status: 'pending', timeout })
    client.start()
  }
  const startMs = performance.now() - wallStart
  const countStatus = (status: Entry['status']) => {
    let count = 0
    for (const entry of clients.values()) if (entry.status === status) count++
    return count
  }
  await until(() => countStatus('qr') === N, 'every QR')
  const heapLive = heapUsed() - heapBefore
  for (let i = 0; i < N / 2; i++) sim.scan(`c${i}`)
  await until(() => countStatus('ready') === N / 2 && clients.size === N / 2, 'half ready')
  const shutdownStart = performance.now()
  for (const campaignId of [...clients.keys()]) cleanupSession(campaignId)
  await Promise.all([...stopping])
  const shutdownMs = performance.now() - shutdownStart
  if (sim.liveCount() !== 0) throw new Error('engines left after shutdown')
  return figures('seed-map', startMs, heapLive, shutdownMs, performance.now() - wallStart)
}

function figures(
  name: string,
  startMs: number,
  heapLive: number,
  shutdownMs: number,
  wallMs: number
): CoreFigures {
  return {
    design: name,
    n: N,
    startMs: round(startMs),
    startUsPerSession: round((startMs * 1000) / N),
    heapPerSessionBytes: Math.round(heapLive / N),
    heapLiveBytes: heapLive,
    shutdownMs: round(shutdownMs),
    wallMs: round(wallMs),
  }
}

const result = design === 'seed-map' ? await runSeedMap() : await runQrvisor()
console.log(JSON.stringify(result))
