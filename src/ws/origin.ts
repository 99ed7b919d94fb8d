/**
 * Which pages may open a WebSocket: `WS_ALLOWED_ORIGINS`. Browsers send `Origin` with every
 * WebSocket handshake and, unlike `fetch`, apply no CORS to it, so without this check a page of
 * any site could open a socket to qrvisor in its visitor's browser. Clients that are not
 * browsers (servers, scripts) send no `Origin` and are not concerned.
 *
 * @module
 */
import type { IncomingMessage } from 'node:http'

/**
 * Builds the check. An upgrade is allowed when it carries no `Origin`, when no list is
 * configured (`allowed` is null), when it comes from the service's own pages (the `Origin`'s
 * host is the request's `Host`: the dashboard and the inspector always work), or when its
 * `Origin` is listed exactly.
 *
 * @example
 * const isAllowedOrigin = createOriginCheck(['https://app.example.com'])
 * if (!isAllowedOrigin(request)) refuseUpgrade(socket, 403, 'origin_not_allowed', '…')
 */
export function createOriginCheck(
  allowed: readonly string[] | null
): (request: IncomingMessage) => boolean {
  if (allowed === null) return () => true
  const listed = new Set(allowed)
  return function isAllowedOrigin(request) {
    const origin = request.headers.origin
    if (origin === undefined) return true
    return listed.has(origin) || isSameOrigin(origin, request.headers.host)
  }
}

function isSameOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false
  try {
    const url = new URL(origin)
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.host === host
  } catch {
    return false
  }
}
