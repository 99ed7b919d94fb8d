/**
 * What logs say instead of a session id. A session id is a capability (anyone who has it may
 * receive that session's QR over `/ws/campaigns`), so it never appears in a log line; the first
 * 8 hex digits of its SHA-256 are enough to follow one session through the logs, and a client
 * that knows its id finds its lines with `sessionTag(id)`.
 *
 * @module
 */
import { createHash } from 'node:crypto'

/**
 * The log field `session` for a session id.
 *
 * @example
 * logger.info({ campaignId, session: sessionTag(sessionId) }, 'session status')
 */
export function sessionTag(sessionId: string): string
export function sessionTag(sessionId: string | null): string | null
export function sessionTag(sessionId: string | null): string | null {
  if (sessionId === null) return null
  return createHash('sha256').update(sessionId).digest('hex').slice(0, 8)
}
