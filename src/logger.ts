/**
 * Structured logs (pino). Lines about a session carry `campaignId` and `sessionId`; tokens and
 * QR texts never appear in a log line (they are redacted wherever they could be attached).
 *
 * Writing a log line can never block, crash or stall the service. Lines go to standard output
 * through `createLogOutput`, not through pino's default destination: that one, when its reader
 * has gone away (EPIPE) or the disk is full (ENOSPC) at the moment the process exits, retries its
 * final synchronous flush forever, so a shutdown that logged its last line never ended
 * (issue 16).
 *
 * @module
 */
import { write as writeToDescriptor } from 'node:fs'
import { pino, type Logger } from 'pino'

export type { Logger }

export interface LoggerOptions {
  level?: string
  /** Where lines go; defaults to standard output through `createLogOutput`. */
  destination?: pino.DestinationStream
}

const REDACT_PATHS = [
  'qr',
  '*.qr',
  'pairingCode',
  '*.pairingCode',
  'phoneNumber',
  '*.phoneNumber',
  'credentials',
  '*.credentials',
  '*.*.credentials',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'headers.authorization',
]

export function createLogger({ level = 'info', destination }: LoggerOptions = {}): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: 'qrvisor' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  }
  if (destination) return pino(options, destination)
  const output = createLogOutput({
    onLinesLost: (lost, cause) => logger.warn({ lost, cause }, 'log lines were lost'),
  })
  const logger = pino(options, output)
  return logger
}

/** A logger that writes nothing, for tests and benchmarks. */
export const silentLogger: Logger = pino({ level: 'silent' }, { write: () => {} })

/** Resolves once the lines logged so far are written (or cannot be), or after `timeoutMs`. */
export function flushLogs(logger: Logger, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs)
    logger.flush(() => {
      clearTimeout(timer)
      resolve()
    })
  })
}

export interface LogOutputOptions {
  /** The file descriptor to write to; standard output by default. */
  fd?: number
  /** Lines waiting to be written beyond this are dropped (and counted): memory stays bounded. */
  maxBufferedBytes?: number
  /**
   * Told once when writing starts failing, with what happened; by default written to standard
   * error (when that is not where the lines go), which may still have a reader.
   */
  onFailure?: (message: string) => void
  /** Told, once writing works again, how many lines were lost meanwhile and why. */
  onLinesLost?: (lost: number, cause: string) => void
}

export interface LogOutput extends pino.DestinationStream {
  write(line: string): void
  /** Calls back once every line written so far has been written or dropped. */
  flush(callback: () => void): void
}

/** The descriptor's reader is gone for good: nothing written to it can arrive any more. */
const READER_GONE = new Set(['EPIPE', 'EBADF', 'ECONNRESET', 'ENOTCONN'])
const EAGAIN_RETRY_MS = 25
const DEFAULT_MAX_BUFFERED_BYTES = 8 * 1024 * 1024

/**
 * Writes log lines to a file descriptor without ever blocking the event loop (asynchronous
 * writes), without unbounded memory (a reader that does not keep up loses lines past
 * `maxBufferedBytes`) and without ever throwing. A reader that went away (EPIPE) is noticed once;
 * from then on lines are dropped. Any other failure (ENOSPC on a full disk, EIO) drops the lines
 * it hit and is reported once; when a write works again, `onLinesLost` hears how many were lost.
 *
 * @example
 * const logger = pino({}, createLogOutput({ fd: 1 }))
 */
export function createLogOutput({
  fd = 1,
  maxBufferedBytes = DEFAULT_MAX_BUFFERED_BYTES,
  onFailure = (message) => {
    if (fd !== 2) writeToDescriptor(2, `${message}\n`, () => {})
  },
  onLinesLost = () => {},
}: LogOutputOptions = {}): LogOutput {
  let queue: string[] = []
  let queuedBytes = 0
  let writing = false
  let readerGone = false
  /** The cause of the lines lost since the last successful write, and how many. */
  let failure: string | undefined
  let lost = 0
  let flushWaiters: Array<() => void> = []

  function lose(lines: number, cause: string): void {
    lost += lines
    if (failure === undefined) {
      failure = cause
      onFailure(`qrvisor: log lines cannot be written (${cause}); the service keeps running.`)
    }
  }

  function writeNext(): void {
    if (queue.length === 0 || readerGone) {
      writing = false
      const waiters = flushWaiters
      flushWaiters = []
      for (const waiter of waiters) waiter()
      return
    }
    writing = true
    const lines = queue.length
    const chunk = Buffer.from(queue.join(''))
    queue = []
    queuedBytes = 0
    writeChunk(chunk, lines)
  }

  function writeChunk(chunk: Buffer, lines: number): void {
    writeToDescriptor(fd, chunk, 0, chunk.length, null, (error, written) => {
      if (error) {
        const code = error.code ?? 'error'
        if (code === 'EAGAIN') {
          setTimeout(() => writeChunk(chunk, lines), EAGAIN_RETRY_MS).unref()
          return
        }
        if (READER_GONE.has(code)) {
          readerGone = true
          lose(lines + queue.length, `${code}: nobody reads them any more`)
          queue = []
          queuedBytes = 0
        } else {
          lose(lines, error.message)
        }
        writeNext()
        return
      }
      if (written < chunk.length) {
        writeChunk(chunk.subarray(written), lines)
        return
      }
      if (failure !== undefined) {
        const [count, cause] = [lost, failure]
        failure = undefined
        lost = 0
        onLinesLost(count, cause)
      }
      writeNext()
    })
  }

  return {
    write(line) {
      if (readerGone) return
      if (queuedBytes + line.length > maxBufferedBytes) {
        lose(1, 'the reader does not keep up')
        return
      }
      queue.push(line)
      queuedBytes += line.length
      if (!writing) writeNext()
    },
    flush(callback) {
      if (writing) flushWaiters.push(callback)
      else process.nextTick(callback)
    },
  }
}
