/**
 * The API's error answers, exactly the contract's shape:
 * `{ "error": { "code": "<snake_case>", "message": "<sentence for a person>" } }`.
 *
 * @module
 */
import type { Context } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'

export type ErrorCode =
  | 'unauthorized'
  | 'forbidden'
  | 'origin_not_allowed'
  | 'invalid_campaign_id'
  | 'invalid_body'
  | 'invalid_query'
  | 'not_found'
  | 'method_not_allowed'
  | 'nothing_to_do'
  | 'at_capacity'
  | 'shutting_down'
  | 'internal'

export interface ErrorBody {
  error: { code: ErrorCode; message: string }
}

export function errorBody(code: ErrorCode, message: string): ErrorBody {
  return { error: { code, message } }
}

/**
 * Answers with an error in the contract's shape.
 *
 * @example
 * return sendError(c, 403, 'forbidden', 'This campaign belongs to another user.')
 */
export function sendError(
  c: Context,
  status: ContentfulStatusCode,
  code: ErrorCode,
  message: string,
  headers: Record<string, string> = {}
): Response {
  return c.json(errorBody(code, message), status, headers)
}

/** Thrown by handlers and middleware for an expected failure; `app.onError` answers it. */
export class ApiError extends Error {
  override name = 'ApiError'
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: ErrorCode,
    message: string,
    readonly headers: Record<string, string> = {}
  ) {
    super(message)
  }
}
