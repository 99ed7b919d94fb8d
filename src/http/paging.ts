/**
 * Paged list answers: `?limit=` and `?cursor=` in, `nextCursor` out. A cursor is opaque to
 * clients; it encodes the position after which the next page starts, so pages stay stable while
 * entries are added (at the end) or removed.
 *
 * @module
 */
import { ApiError } from './errors.ts'

export const DEFAULT_PAGE_LIMIT = 100
export const MAX_PAGE_LIMIT = 1000

export interface PageRequest {
  limit: number
  /** The position the page starts after; undefined for the first page. */
  after: number | undefined
}

export const LIMIT_MESSAGE = `The query parameter limit must be a whole number from 1 to ${MAX_PAGE_LIMIT}.`

const CURSOR_TEXT = /^p([1-9][0-9]{0,15})$/

/**
 * Parses `?limit=` (1 to 1000, default 100) and `?cursor=` (a previous page's `nextCursor`);
 * anything else is 400 `invalid_query`.
 *
 * @example
 * const { limit, after } = parsePageQuery({ limit: c.req.query('limit'), cursor: c.req.query('cursor') })
 */
export function parsePageQuery(query: { limit?: string; cursor?: string }): PageRequest {
  return { limit: parseLimit(query.limit), after: parseCursor(query.cursor) }
}

/** The `nextCursor` of a page whose next page starts after `position`; null at the end. */
export function encodeCursor(position: number | null): string | null {
  return position === null ? null : Buffer.from(`p${position}`).toString('base64url')
}

function parseLimit(text: string | undefined): number {
  if (text === undefined) return DEFAULT_PAGE_LIMIT
  const limit = /^[0-9]{1,4}$/.test(text) ? Number(text) : NaN
  if (!(limit >= 1 && limit <= MAX_PAGE_LIMIT)) {
    throw new ApiError(400, 'invalid_query', LIMIT_MESSAGE)
  }
  return limit
}

function parseCursor(text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const match = CURSOR_TEXT.exec(Buffer.from(text, 'base64url').toString('latin1'))
  const position = match ? Number(match[1]) : NaN
  // Only the exact text this service gave out: base64url decoding skips what it cannot read.
  if (!Number.isSafeInteger(position) || encodeCursor(position) !== text) {
    throw new ApiError(
      400,
      'invalid_query',
      'The query parameter cursor must be the nextCursor of a previous page.'
    )
  }
  return position
}
