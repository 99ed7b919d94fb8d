/**
 * HTTP upgrades on the service's one port: requests for a WebSocket endpoint go to its handler,
 * every other request is served as ordinary HTTP whatever its `Upgrade` header says (an h2c probe
 * to `/healthz` gets `/healthz`), and a refused upgrade is answered in the API's error shape.
 *
 * Node removes its own 'error' listener from a socket before it emits 'upgrade': a socket that
 * is written to or ended from here on needs one of its own, or a client that resets the
 * connection (ECONNRESET, EPIPE) raises an 'error' nobody handles and ends the process.
 * `guardUpgradeSocket` gives it one; every entry point here calls it.
 *
 * @module
 */
import { STATUS_CODES, type IncomingMessage, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { errorBody, type ErrorCode } from '../errors.ts'

/** Handles an upgrade for one path; answers refusals itself (`refuseUpgrade`). */
export type UpgradeHandler = (request: IncomingMessage, socket: Duplex, head: Buffer) => void

/** How long a refused socket may stay open for the client to read the answer and close. */
export const REFUSAL_LINGER_MS = 2000

/**
 * Routes the server's upgrades: `endpoints` by path (query ignored); any other request is handed
 * back to the server's request listener as plain HTTP.
 *
 * @example
 * routeUpgrades(server, new Map([['/ws/campaigns', hub.handleUpgrade]]))
 */
export function routeUpgrades(server: Server, endpoints: ReadonlyMap<string, UpgradeHandler>) {
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const handle = endpoints.get(pathOf(request))
    if (handle === undefined) {
      serveAsHttp(server, request, socket, head)
      return
    }
    guardUpgradeSocket(socket)
    handle(request, socket, head)
  })
}

/**
 * Answers a refused upgrade with a plain HTTP response in the API's error shape and closes the
 * connection; a client that neither reads nor closes is cut off after `REFUSAL_LINGER_MS`.
 *
 * @example
 * refuseUpgrade(socket, 401, 'unauthorized', 'A token is required.')
 */
export function refuseUpgrade(
  socket: Duplex,
  status: 401 | 403 | 404 | 500 | 503,
  code: ErrorCode,
  message: string
): void {
  guardUpgradeSocket(socket)
  if (socket.destroyed) return
  const body = JSON.stringify(errorBody(code, message))
  const headers = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}`,
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...(status === 401 ? ['WWW-Authenticate: Bearer'] : []),
    ...(status === 503 ? ['Retry-After: 5'] : []),
  ]
  socket.end(`${headers.join('\r\n')}\r\n\r\n${body}`)
  const linger = setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS)
  linger.unref()
  socket.once('close', () => clearTimeout(linger))
}

/** Gives an upgraded socket an 'error' listener (once): a reset connection is destroyed, quietly. */
export function guardUpgradeSocket(socket: Duplex): void {
  if (!socket.listeners('error').includes(destroyOnError)) socket.on('error', destroyOnError)
}

function destroyOnError(this: Duplex): void {
  this.destroy()
}

/**
 * The request as it would have arrived without its upgrade offer (RFC 9110 §7.8: a server may
 * ignore `Upgrade`): its head is written back in front of the unread bytes and the socket is given
 * to the server as a new connection, so Node's parser serves it, its body and any later request on
 * the connection as usual. Only public APIs: `Readable#unshift` and the documented
 * `server.emit('connection', socket)`. Known limit: a response that Node had queued for a request
 * pipelined before such a request on the same connection may go unanswered (Node's own upgrade
 * handling drops it too); browsers, curl and fetch do not pipeline.
 *
 * TODO: on Node 24.9+ only, the server's `shouldUpgradeCallback` option does this without
 * re-parsing (Node 20 does not have it).
 */
function serveAsHttp(server: Server, request: IncomingMessage, socket: Duplex, head: Buffer) {
  const lines = [`${request.method} ${request.url} HTTP/${request.httpVersion}`]
  const raw = request.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    const value = raw[i + 1]!
    if (name === 'upgrade' || name === 'http2-settings') continue
    if (name === 'connection') {
      const kept = value
        .split(',')
        .map((token) => token.trim())
        .filter((token) => token !== '' && !/^(upgrade|http2-settings)$/i.test(token))
      if (kept.length > 0) lines.push(`${raw[i]}: ${kept.join(', ')}`)
      continue
    }
    lines.push(`${raw[i]}: ${value}`)
  }
  socket.unshift(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), head]))
  server.emit('connection', socket)
}

function pathOf(request: IncomingMessage): string {
  const url = request.url ?? '/'
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}
