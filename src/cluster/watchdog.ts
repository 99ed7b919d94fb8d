/**
 * The watchdog outside the event loop: kills this node's browsers when the main thread stops
 * running JavaScript past a lease's fencing deadline.
 *
 * The lease keeper fences by timers on the main thread. A blocked event loop (a bug, a
 * pathological GC) runs no timer, while the browsers (separate processes) keep going, logged in,
 * after the lease has expired and another node has taken the campaign over. A worker thread does
 * not share the event loop, so it can still kill them:
 *
 * - The main thread stamps a shared word (`beat()`, on its own timer every `beatMs`).
 * - The worker, every `pollMs`: if the main thread has not beaten for `blockedAfterMs`, it
 *   SIGKILLs the browser of every watched campaign whose fencing deadline has passed (its
 *   process group too), once, and writes one JSON line per kill to stderr.
 * - Once the main thread runs again, `onKilled` hears which campaigns lost their browser.
 *
 * A main thread that beats is never second-guessed: it fences itself. The worker never renews a
 * lease and never touches the database. It does not cover a Node process stopped whole (SIGSTOP,
 * a debugger): a worker thread is stopped with it.
 *
 * Time is `process.hrtime` in milliseconds (`hrtimeMs()`): monotonic, and the same clock in
 * both threads (each thread's `performance.now()` counts from its own start).
 *
 * @module
 */
import { Worker } from 'node:worker_threads'
import type { Logger } from '../logger.ts'

export interface WatchdogOptions {
  /** The main thread counts as blocked once it has not beaten for this long. */
  blockedAfterMs?: number
  /** How often the worker checks. */
  pollMs?: number
  /** How often the main thread beats on its own timer; well under `blockedAfterMs`. */
  beatMs?: number
  /** Told, once the main thread runs again, which campaigns' browsers the worker killed. */
  onKilled?: (campaignIds: string[]) => void
  /** Where the worker's own errors and the worker's end are reported. */
  logger?: Logger
  /** The file descriptor the worker writes its kill lines to (standard error by default). */
  logFd?: number
}

export interface Watchdog {
  /**
   * The campaign's lease is provable until `deadlineMs` (`hrtimeMs()` time) and its browser is
   * these processes. Called again at each renewal and whenever the pids change; replaces what
   * was watched for the campaign.
   */
  watch(campaignId: string, deadlineMs: number, pids: readonly number[]): void
  /** The campaign's engine is gone: nothing of it to kill any more. */
  unwatch(campaignId: string): void
  /** The main thread is running (also done on its own timer, and by `watch` and `unwatch`). */
  beat(): void
  /** Stops the timer and the worker. */
  stop(): Promise<void>
}

/** `process.hrtime` in milliseconds: the clock of `watch`'s deadlines, the same in every thread. */
export function hrtimeMs(): number {
  return Number(process.hrtime.bigint()) / 1e6
}

const WORKER_URL = new URL('./watchdogWorker.mjs', import.meta.url)

type WorkerReport = { type: 'killed'; campaignIds: string[] } | { type: 'error'; message: string }

/**
 * Starts the watchdog's worker thread and the main thread's heartbeat.
 *
 * @example
 * const watchdog = startWatchdog({ onKilled: (ids) => leased.fence(ids, 'fenced'), logger })
 * watchdog.watch(campaignId, hrtimeMs() + msUntilFencing, session.pids?.() ?? [])
 */
export function startWatchdog({
  blockedAfterMs = 1_000,
  pollMs = 100,
  beatMs = 250,
  onKilled = () => {},
  logger,
  logFd = 2,
}: WatchdogOptions = {}): Watchdog {
  if (!(beatMs > 0 && beatMs * 2 <= blockedAfterMs)) {
    throw new RangeError(
      `watchdog: beatMs (${beatMs}) must be positive and at most half of blockedAfterMs (${blockedAfterMs})`
    )
  }
  const heartbeat = new SharedArrayBuffer(BigInt64Array.BYTES_PER_ELEMENT)
  const lastBeat = new BigInt64Array(heartbeat)
  const beat = () => Atomics.store(lastBeat, 0, process.hrtime.bigint())
  beat()

  let stopped = false
  const worker = new Worker(WORKER_URL, {
    workerData: { heartbeat, blockedAfterMs, pollMs, logFd },
    // Plain JavaScript needs none of the process's flags (`--import tsx`, or an `--eval` that
    // a worker inheriting it would run instead of its own file).
    execArgv: [],
  })
  worker.on('message', (report: WorkerReport) => {
    if (report.type === 'killed') {
      logger?.error({ campaignIds: report.campaignIds }, 'watchdog killed browsers while blocked')
      try {
        onKilled(report.campaignIds)
      } catch (error) {
        logger?.error({ err: error }, 'watchdog: onKilled threw')
      }
    } else {
      logger?.error({ err: report.message }, 'watchdog: a check failed')
    }
  })
  worker.on('error', (error) => {
    logger?.error({ err: error }, 'watchdog worker failed; browsers are no longer guarded')
  })
  worker.on('exit', (code) => {
    if (!stopped) logger?.error({ code }, 'watchdog worker exited; browsers are no longer guarded')
  })
  // The watchdog must never keep a finished process (or a test run) alive.
  worker.unref()

  const beatTimer = setInterval(beat, beatMs)
  beatTimer.unref()

  return {
    watch(campaignId, deadlineMs, pids) {
      if (stopped) return
      beat()
      worker.postMessage({ type: 'watch', campaignId, deadlineMs, pids: [...pids] })
    },
    unwatch(campaignId) {
      if (stopped) return
      beat()
      worker.postMessage({ type: 'unwatch', campaignId })
    },
    beat,
    async stop() {
      if (stopped) return
      stopped = true
      clearInterval(beatTimer)
      await worker.terminate()
    },
  }
}
