/**
 * The store's errors. An open failure stops the service's start: its message says what is wrong,
 * where (a file path, or a PostgreSQL host without the password) and what to do; nothing is
 * deleted or rewritten to get past it.
 *
 * @module
 */

/** The store cannot be opened. */
export class StoreOpenError extends Error {
  override name = 'StoreOpenError'

  constructor(
    message: string,
    /** The file path or `postgres://user@host:port/database`. */
    readonly location: string,
    options?: { cause?: unknown }
  ) {
    super(message, options)
  }
}

/** A call after `close()`: a bug in the caller. */
export class StoreClosedError extends Error {
  override name = 'StoreClosedError'

  constructor(location: string) {
    super(`the store at ${location} is closed`)
  }
}

/** The message of anything thrown, for logs and error messages. */
export function messageOf(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) {
    return error.errors.map(messageOf).join('; ')
  }
  return error instanceof Error ? error.message : String(error)
}

/** A driver error's code (`SQLITE_BUSY`, `ECONNREFUSED`, a PostgreSQL SQLSTATE), if it has one. */
export function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code === 'string') return code
  return error instanceof AggregateError ? codeOf(error.errors[0]) : undefined
}
