/**
 * The service as a process: what stops it, how long stopping may take, and its exit code.
 *
 * - SIGTERM, SIGINT and SIGHUP stop it gracefully; exit code 0 once everything is stopped.
 * - Signals within `repeatWindowMs` of the first are the same stop: Ctrl-C signals the whole
 *   process group, and npm forwards the signal it got, so one Ctrl-C arrives twice. A signal after
 *   that window is a deliberate second one: the process exits at once with code 1.
 * - An exception nothing caught is logged, then the service stops gracefully (every engine
 *   stopped) and exits 1, so a supervisor (systemd, Kubernetes) restarts a clean process.
 * - A promise rejection nobody handles is logged and the service keeps serving: whatsapp-web.js
 *   leaves promises loose, and one session's failure must not end the others.
 * - Started by npm (`npm start`), the service also stops when npm itself is gone (killed, or hung
 *   up): npm forwards only SIGTERM and SIGINT, and an orphan would keep serving unnoticed.
 * - A standard output or error that nobody reads any more is noticed once and never stops it.
 * - A stop that takes longer than the teardown bound plus 10 s exits 1 anyway.
 *
 * @module
 */
import { MAX_DURATION_MS } from './config.ts'
import { flushLogs, type Logger } from './logger.ts'

export interface StoppableService {
  /** Graceful shutdown; resolves once everything the service started is stopped. */
  close(): Promise<void>
}

export interface ProcessSupervisionOptions {
  logger: Logger
  /**
   * The longest a session's teardown may take (`DESTROY_TIMEOUT_MS` + `KILL_TIMEOUT_MS`). A stop
   * may take 10 s more; then the process exits 1 without waiting further.
   */
  teardownBoundMs: number
  /** A signal this soon after the first one is part of the same stop. */
  repeatWindowMs?: number
  /** How often to check, when npm started the service, that npm is still there (0: never). */
  parentCheckMs?: number
  /** How long the last log lines may take to be written before the process exits. */
  logFlushMs?: number
}

export interface ProcessSupervision {
  /** What a stop closes. A stop requested before this is called happens as soon as it is. */
  supervise(service: StoppableService): void
  /** Writes the pending log lines (bounded by `logFlushMs`), then exits with `code`. */
  exit(code: number): Promise<void>
}

const STOP_SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP']
/** npm forwards a signal within milliseconds; a person pressing Ctrl-C again takes longer. */
export const DEFAULT_REPEAT_WINDOW_MS = 2_000
/** Scheduling slack on top of the teardowns, for the rest of a stop (sockets, workers, logs). */
const SHUTDOWN_SLACK_MS = 10_000
/** How long the last log lines may take after a deliberate second signal. */
const FORCED_EXIT_FLUSH_MS = 200

/**
 * Installs the process's handlers (signals, uncaught exceptions, unhandled rejections, broken
 * standard streams, a vanished npm) and returns the hand-over for the service to stop.
 *
 * @example
 * const supervision = superviseProcess({ logger, teardownBoundMs: 15_000 })
 * supervision.supervise(await startServer(config, { logger }))
 */
export function superviseProcess({
  logger,
  teardownBoundMs,
  repeatWindowMs = DEFAULT_REPEAT_WINDOW_MS,
  parentCheckMs = 1_000,
  logFlushMs = 2_000,
}: ProcessSupervisionOptions): ProcessSupervision {
  let service: StoppableService | undefined
  let stopRequestedAt: number | undefined
  let closing: Promise<void> | undefined
  let exitCode = 0
  let exiting = false

  async function exit(code: number, flushMs = logFlushMs): Promise<void> {
    if (exiting) return
    exiting = true
    await flushLogs(logger, flushMs)
    process.exit(code)
  }

  function requestStop(why: Record<string, unknown>, message: string): void {
    if (stopRequestedAt !== undefined) return
    stopRequestedAt = Date.now()
    logger.info(why, message)
    const boundMs = Math.min(teardownBoundMs + SHUTDOWN_SLACK_MS, MAX_DURATION_MS)
    setTimeout(() => {
      logger.error({ boundMs }, 'shutdown did not finish in time; exiting')
      void exit(1)
    }, boundMs).unref()
    if (service) close(service)
  }

  function close(running: StoppableService): void {
    closing ??= running.close().then(
      () => {
        if (exitCode === 0) logger.info('shut down cleanly')
        else logger.info({ exitCode }, 'shut down after a failure')
        return exit(exitCode)
      },
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed')
        return exit(1)
      }
    )
  }

  function onSignal(signal: NodeJS.Signals): void {
    if (stopRequestedAt === undefined) {
      requestStop({ signal }, 'shutting down')
      return
    }
    const sinceFirstMs = Date.now() - stopRequestedAt
    if (sinceFirstMs < repeatWindowMs) {
      logger.debug({ signal, sinceFirstMs }, 'the same stop signalled again (process group, npm)')
      return
    }
    logger.warn({ signal }, 'second signal: exiting without waiting')
    void exit(1, Math.min(logFlushMs, FORCED_EXIT_FLUSH_MS))
  }
  for (const signal of STOP_SIGNALS) process.on(signal, onSignal)

  process.on('uncaughtException', (error, origin) => {
    exitCode = 1
    if (stopRequestedAt === undefined) {
      logger.fatal({ err: error, origin }, 'uncaught exception: shutting down')
      requestStop({ exitCode }, 'stopping every session after an uncaught exception')
    } else {
      logger.error({ err: error, origin }, 'uncaught exception while shutting down')
    }
  })

  process.on('unhandledRejection', (reason) => {
    logger.error({ err: reason }, 'unhandled promise rejection (ignored)')
  })

  // A write to a closed terminal or pipe would otherwise be an uncaught 'error' event.
  for (const stream of [process.stdout, process.stderr]) {
    let noticed = false
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (noticed) return
      noticed = true
      const name = stream === process.stdout ? 'output' : 'error'
      logger.warn({ code: error.code }, `standard ${name} cannot be written; ignored`)
    })
  }

  // npm forwards SIGTERM and SIGINT to its child, but not SIGHUP or its own death (SIGKILL).
  const startedBy = process.env.npm_lifecycle_event
  if (startedBy !== undefined && parentCheckMs > 0) {
    const parent = process.ppid
    setInterval(() => {
      if (process.ppid !== parent) {
        requestStop({ parent, startedBy }, 'npm, which started the service, is gone: shutting down')
      }
    }, parentCheckMs).unref()
  }

  return {
    supervise(running) {
      service = running
      if (stopRequestedAt !== undefined) close(running)
    },
    exit: (code) => exit(code),
  }
}
