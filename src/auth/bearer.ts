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
