/**
 * Reading a bearer token from a request: the `Authorization` header, or (WebSocket upgrades only)
 * the `token` query parameter.
 *
 * @module
 */

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(authorization: string | null | undefined): string | null {
  if (!authorization) return null
  const match = /^Bearer[ ]+([^\s]+)\s*$/i.exec(authorization)
  return match?.[1] ?? null
}

/**
 * The token of a WebSocket upgrade: `?token=` (browsers cannot set headers on one), else the
 * `Authorization` header.
 */
export function upgradeToken(request: {
  url?: string
  headers: { authorization?: string }
}): string | null {
  const fromQuery = new URL(request.url ?? '/', 'http://localhost').searchParams.get('token')
  return fromQuery || bearerToken(request.headers.authorization)
}
