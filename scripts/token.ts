/**
 * `npm run token -- --sub alice [--admin] [--campaigns a,b] [--ttl 3600]`: prints a bearer token
 * signed with `JWT_SECRET` (HS256), with `JWT_ISSUER` and `JWT_AUDIENCE` when they are set, for
 * curl and the demo. The environment is checked by the service's own rules (`loadConfig`), so a
 * secret the service would refuse signs nothing.
 *
 * @module
 */
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { SignJWT } from 'jose'
import { ConfigError, loadConfig } from '../src/config.ts'

const USAGE = 'usage: npm run token -- --sub <user> [--admin] [--campaigns a,b] [--ttl <seconds>]'

/**
 * Signs a token the service accepts.
 *
 * @example
 * const token = await signToken({ secret, sub: 'alice', admin: false, ttlSeconds: 3600 })
 */
export async function signToken({
  secret,
  sub,
  admin = false,
  campaigns,
  ttlSeconds = 3600,
  issuer,
  audience,
}: {
  secret: string
  sub: string
  admin?: boolean
  campaigns?: string[]
  ttlSeconds?: number
  issuer?: string
  audience?: string
}): Promise<string> {
  const jwt = new SignJWT({
    roles: admin ? ['admin'] : [],
    ...(campaigns ? { campaigns } : {}),
  })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(`${ttlSeconds}s`)
  if (issuer) jwt.setIssuer(issuer)
  if (audience) jwt.setAudience(audience)
  return jwt.sign(new TextEncoder().encode(secret))
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sub: { type: 'string' },
      admin: { type: 'boolean', default: false },
      campaigns: { type: 'string' },
      ttl: { type: 'string', default: '3600' },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) {
    console.log(USAGE)
    return
  }
  // The service's rules, so that the token is one it accepts (a short secret is refused here too).
  const { key, issuer, audience } = loadConfig(process.env).jwt
  if (key.kind !== 'secret') {
    throw new ConfigError(
      `This service verifies tokens with ${key.kind === 'publicKey' ? 'JWT_PUBLIC_KEY' : 'JWT_JWKS_URL'}: ` +
        'tokens come from whoever holds the private key. npm run token signs only with JWT_SECRET.'
    )
  }
  if (!values.sub) throw new Error(`--sub is required.\n${USAGE}`)
  const ttlSeconds = Number(values.ttl)
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw new Error(`--ttl must be a positive whole number of seconds.\n${USAGE}`)
  }
  const token = await signToken({
    secret: key.secret,
    sub: values.sub,
    admin: values.admin,
    campaigns: values.campaigns?.split(',').filter((id) => id !== ''),
    ttlSeconds,
    issuer: issuer ?? undefined,
    audience: audience ?? undefined,
  })
  console.log(token)
}

// Run only as a script: tests import signToken.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error)
    process.exit(1)
  })
}
