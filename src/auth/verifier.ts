/**
 * Bearer token verification with jose. The algorithm is pinned by the configured key: HS256 for a
 * shared secret, the key type's algorithm for a PEM public key (so an HS256 token signed with the
 * public key as its secret is refused), asymmetric algorithms only for a JWKS endpoint. `sub` and
 * `exp` are required; `iss` and `aud` are checked when configured.
 *
 * Verified tokens are remembered until their `exp` (a bounded map keyed by the whole token string):
 * clients send the same token on every request, and an HMAC or RSA check through WebCrypto costs
 * far more than the rest of a status request. A token removed from a JWKS stays accepted until it
 * expires, as it would at any verifier that caches keys.
 *
 * @module
 */
import { createPublicKey, type KeyObject } from 'node:crypto'
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose'
import type { JwtConfig } from '../config.ts'
import type { Identity } from './identity.ts'

export interface TokenVerifier {
  /** Resolves the caller's identity, or rejects with `InvalidTokenError`. */
  verify(token: string): Promise<Identity>
}

/** The token is missing, malformed, expired, or does not verify. `message` is safe to show. */
export class InvalidTokenError extends Error {
  override name = 'InvalidTokenError'
}

const ASYMMETRIC_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'ES384', 'ES512', 'EdDSA']
const CLOCK_TOLERANCE_SECONDS = 5

/**
 * Builds the verifier for the configured key.
 *
 * @example
 * const verifier = createTokenVerifier({ key: { kind: 'secret', secret }, issuer: null, audience: null })
 * const identity = await verifier.verify(token)
 */
export function createTokenVerifier(
  config: JwtConfig,
  { cacheSize = 10_000, now = Date.now }: { cacheSize?: number; now?: () => number } = {}
): TokenVerifier {
  const { key, algorithms } = resolveKey(config)
  const getKey: JWTVerifyGetKey = typeof key === 'function' ? key : async () => key
  const options = {
    algorithms,
    requiredClaims: ['exp', 'sub'],
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    ...(config.issuer === null ? {} : { issuer: config.issuer }),
    ...(config.audience === null ? {} : { audience: config.audience }),
  }

  const verified = new Map<string, { identity: Identity; expiresAtMs: number }>()

  return {
    async verify(token) {
      const cached = verified.get(token)
      if (cached !== undefined) {
        if (now() < cached.expiresAtMs) return cached.identity
        verified.delete(token)
      }
      let payload: JWTPayload
      try {
        payload = (await jwtVerify(token, getKey, { ...options, currentDate: new Date(now()) }))
          .payload
      } catch (error) {
        throw new InvalidTokenError(describeJoseError(error))
      }
      const expiresAtMs = (payload.exp as number) * 1000
      const identity = identityFrom(payload, expiresAtMs + CLOCK_TOLERANCE_SECONDS * 1000)
      verified.set(token, { identity, expiresAtMs })
      if (verified.size > cacheSize) {
        const oldest = verified.keys().next().value
        if (oldest !== undefined) verified.delete(oldest)
      }
      return identity
    },
  }
}

function resolveKey(config: JwtConfig): {
  key: Uint8Array | KeyObject | JWTVerifyGetKey
  algorithms: string[]
} {
  switch (config.key.kind) {
    case 'secret':
      return { key: new TextEncoder().encode(config.key.secret), algorithms: ['HS256'] }
    case 'publicKey': {
      const key = createPublicKey(config.key.pem)
      return { key, algorithms: [algorithmFor(key)] }
    }
    case 'jwks':
      return { key: createRemoteJWKSet(new URL(config.key.url)), algorithms: ASYMMETRIC_ALGORITHMS }
  }
}

/** The one algorithm a public key may verify. */
function algorithmFor(key: KeyObject): string {
  const type = key.asymmetricKeyType
  if (type === 'rsa') return 'RS256'
  if (type === 'rsa-pss') return 'PS256'
  if (type === 'ed25519') return 'EdDSA'
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve
    if (curve === 'prime256v1') return 'ES256'
    if (curve === 'secp384r1') return 'ES384'
    if (curve === 'secp521r1') return 'ES512'
  }
  throw new Error(
    `JWT_PUBLIC_KEY: unsupported key type ${type ?? 'unknown'}; use RSA, P-256/384/521 or Ed25519`
  )
}

function identityFrom(payload: JWTPayload, validUntil: number): Identity {
  const { sub, roles, campaigns } = payload
  if (typeof sub !== 'string' || sub === '') {
    throw new InvalidTokenError('The token has no subject (sub).')
  }
  if (roles !== undefined && !isStringArray(roles)) {
    throw new InvalidTokenError('The token claim "roles" must be an array of strings.')
  }
  if (campaigns !== undefined && !isStringArray(campaigns)) {
    throw new InvalidTokenError('The token claim "campaigns" must be an array of strings.')
  }
  return {
    userId: sub,
    admin: roles?.includes('admin') ?? false,
    campaigns: campaigns === undefined ? null : new Set(campaigns),
    validUntil,
  }
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string')
}

function describeJoseError(error: unknown): string {
  if (error instanceof errors.JWTExpired) return 'The token has expired.'
  if (error instanceof errors.JWTClaimValidationFailed) {
    return `The token's "${error.claim}" claim is missing or not accepted.`
  }
  if (error instanceof errors.JOSEAlgNotAllowed)
    return 'The token is signed with an algorithm that is not accepted.'
  if (error instanceof errors.JWSSignatureVerificationFailed)
    return 'The token signature is invalid.'
  if (error instanceof errors.JWKSNoMatchingKey) return 'No key of the JWKS matches the token.'
  if (error instanceof errors.JOSEError) return 'The token is malformed or cannot be verified.'
  return 'The token cannot be verified.'
}
