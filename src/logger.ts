/**
 * Structured logs (pino). Lines about a session carry `campaignId` and `sessionId`; tokens and
 * QR texts never appear in a log line (they are redacted wherever they could be attached).
 *
 * @module
 */
import { pino, type Logger } from 'pino'

export type { Logger }

export interface LoggerOptions {
  level?: string
  /** Where lines go; defaults to stdout. */
  destination?: pino.DestinationStream
}

const REDACT_PATHS = [
  'qr',
  '*.qr',
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
  return destination ? pino(options, destination) : pino(options)
}

/** A logger that writes nothing, for tests and benchmarks. */
export const silentLogger: Logger = pino({ level: 'silent' })
