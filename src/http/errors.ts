/**
 * The API's error answers (the shape and codes are in ../errors.ts) and the error handlers throw.
 *
 * @module
 */
import type { Context } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { errorBody, type ErrorCode } from '../errors.ts'

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
