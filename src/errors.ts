/**
 * The error answers of the contract, shared by HTTP and WebSocket refusals:
 * `{ "error": { "code": "<snake_case>", "message": "<sentence for a person>" } }`.
 * The codes are documented in docs/api.md.
 *
 * @module
 */
export type ErrorCode =
  | 'unauthorized'
  | 'forbidden'
  | 'origin_not_allowed'
  | 'invalid_campaign_id'
  | 'invalid_body'
  | 'invalid_query'
  | 'invalid_webhook_url'
  | 'not_found'
  | 'no_qr'
  | 'method_not_allowed'
  | 'nothing_to_do'
  | 'at_capacity'
  | 'shutting_down'
  | 'store_unavailable'
  /** A cluster node that runs the campaign did not answer a forwarded request. */
  | 'node_unavailable'
  | 'internal'

export interface ErrorBody {
  error: { code: ErrorCode; message: string }
}

export function errorBody(code: ErrorCode, message: string): ErrorBody {
  return { error: { code, message } }
}
