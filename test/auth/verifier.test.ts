/**
 * Bearer tokens: every way a token must be refused, against each kind of configured key, and the
 * claims that make an identity. Over HTTP: each refusal is 401 with `WWW-Authenticate: Bearer`.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { canAccessCampaign, type Identity } from '../../src/auth/identity.ts'
import { createTokenVerifier, InvalidTokenError } from '../../src/auth/verifier.ts'
import type { JwtConfig } from '../../src/config.ts'
import { api, closeAll, SECRET, startTestServer, tokenFor } from '../support/edge.ts'

const secretKey = new TextEncoder().encode(SECRET)
const hsConfig: JwtConfig = {
  key: { kind: 'secret', secret: SECRET },
  issuer: null,
  audience: null,
}

function hs256(
  claims: Record<string, unknown> = {},
  { expiresIn = '1h' }: { expiresIn?: string | number } = {}
) {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('alice')
    .setIssuedAt()
    .setExpirationTime(expiresIn)
}

async function refusal(config: JwtConfig, token: string): Promise<string> {
  const error = await createTokenVerifier(config)
    .verify(token)
    .then(
      () => null,
      (e: unknown) => e
    )
  expect(error).toBeInstanceOf(InvalidTokenError)
  return (error as Error).message
}

describe('createTokenVerifier with JWT_SECRET (HS256)', () => {
  it('accepts a valid token and reads sub, roles, campaigns and exp (plus 5 s of tolerance)', async () => {
    const verifier = createTokenVerifier(hsConfig)
    const exp = Math.floor(Date.now() / 1000) + 600
    expect(await verifier.verify(await hs256({}, { expiresIn: exp }).sign(secretKey))).toEqual({
      userId: 'alice',
      admin: false,
      campaigns: null,
      validUntil: exp * 1000 + 5000,
    })
    const admin = await verifier.verify(
      await hs256({ roles: ['admin'], campaigns: ['a', 'b'] }).sign(secretKey)
    )
    expect(admin.admin).toBe(true)
    expect([...(admin.campaigns ?? [])]).toEqual(['a', 'b'])
  })

  it('refuses garbage, a wrong signature, an expired token, alg none, and missing sub or exp', async () => {
    expect(await refusal(hsConfig, 'garbage')).toMatch(/malformed/)
    const wrongKey = new TextEncoder().encode('another-secret-that-is-long-enough-!!')
    expect(await refusal(hsConfig, await hs256().sign(wrongKey))).toMatch(/signature/)
    const expired = await hs256({}, { expiresIn: '-1m' }).sign(secretKey)
    expect(await refusal(hsConfig, expired)).toMatch(/expired/)
    const none = new UnsecuredJWT({ sub: 'alice' }).setExpirationTime('1h').encode()
    expect(await refusal(hsConfig, none)).toMatch(/algorithm|malformed/)
    const noSub = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('1h')
      .sign(secretKey)
    expect(await refusal(hsConfig, noSub)).toMatch(/sub/)
    const noExp = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('alice')
      .sign(secretKey)
    expect(await refusal(hsConfig, noExp)).toMatch(/exp/)
  })

  it('refuses HS384/HS512 (the algorithm is pinned)', async () => {
    const hs512 = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS512' })
      .setSubject('alice')
      .setExpirationTime('1h')
      .sign(secretKey)
    expect(await refusal(hsConfig, hs512)).toMatch(/algorithm/)
  })

  it('checks iss and aud when configured', async () => {
    const config: JwtConfig = { ...hsConfig, issuer: 'https://issuer.example', audience: 'qrvisor' }
    const good = await hs256()
      .setIssuer('https://issuer.example')
      .setAudience('qrvisor')
      .sign(secretKey)
    expect((await createTokenVerifier(config).verify(good)).userId).toBe('alice')
    const wrongIssuer = await hs256()
      .setIssuer('https://evil.example')
      .setAudience('qrvisor')
      .sign(secretKey)
    expect(await refusal(config, wrongIssuer)).toMatch(/iss/)
    const wrongAudience = await hs256()
      .setIssuer('https://issuer.example')
      .setAudience('other')
      .sign(secretKey)
    expect(await refusal(config, wrongAudience)).toMatch(/aud/)
    expect(await refusal(config, await hs256().sign(secretKey))).toMatch(/iss/)
  })

  it('remembers a verified token only until its exp', async () => {
    let clock = Date.now()
    const verifier = createTokenVerifier(hsConfig, { now: () => clock })
    const token = await hs256({}, { expiresIn: '10s' }).sign(secretKey)
    expect((await verifier.verify(token)).userId).toBe('alice')
    expect((await verifier.verify(token)).userId).toBe('alice')
    clock += 20_000
    const error = await verifier.verify(token).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(InvalidTokenError)
    expect((error as Error).message).toMatch(/expired/)
  })

  it('refuses malformed roles and campaigns claims', async () => {
    expect(await refusal(hsConfig, await hs256({ roles: 'admin' }).sign(secretKey))).toMatch(
      /roles/
    )
    expect(await refusal(hsConfig, await hs256({ campaigns: [1, 2] }).sign(secretKey))).toMatch(
      /campaigns/
    )
  })
})

describe('createTokenVerifier with JWT_PUBLIC_KEY', () => {
  it('accepts RS256 for an RSA key and refuses the HS256 key-confusion attack', async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true })
    const pem = await exportSPKI(publicKey)
    const config: JwtConfig = { key: { kind: 'publicKey', pem }, issuer: null, audience: null }
    const rs256 = await new SignJWT({})
      .setProtectedHeader({ alg: 'RS256' })
      .setSubject('alice')
      .setExpirationTime('1h')
      .sign(privateKey)
    expect((await createTokenVerifier(config).verify(rs256)).userId).toBe('alice')

    // The attacker signs HS256 with the public key's PEM text as the HMAC secret.
    const confused = await hs256().sign(new TextEncoder().encode(pem))
    expect(await refusal(config, confused)).toMatch(/algorithm/)
  })

  it('pins ES256 for a P-256 key', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
    const config: JwtConfig = {
      key: { kind: 'publicKey', pem: await exportSPKI(publicKey) },
      issuer: null,
      audience: null,
    }
    const es256 = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256' })
      .setSubject('alice')
      .setExpirationTime('1h')
      .sign(privateKey)
    expect((await createTokenVerifier(config).verify(es256)).userId).toBe('alice')
    const rsa = await generateKeyPair('RS256')
    const rs256 = await new SignJWT({})
      .setProtectedHeader({ alg: 'RS256' })
      .setSubject('alice')
      .setExpirationTime('1h')
      .sign(rsa.privateKey)
    expect(await refusal(config, rs256)).toMatch(/algorithm/)
  })
})

describe('createTokenVerifier with JWT_JWKS_URL', () => {
  let jwksServer: Server
  let url: string
  let privateKey: CryptoKey

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true })
    privateKey = pair.privateKey
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }
    jwksServer = createServer((_request, response) => {
      response.setHeader('Content-Type', 'application/json')
      response.end(JSON.stringify({ keys: [jwk] }))
    })
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`
  })
  afterAll(() => new Promise<void>((resolve) => jwksServer.close(() => resolve())))

  it('verifies against the key set and refuses HS256 and unknown keys', async () => {
    const config: JwtConfig = { key: { kind: 'jwks', url }, issuer: null, audience: null }
    const good = await new SignJWT({ roles: ['admin'] })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setSubject('root')
      .setExpirationTime('1h')
      .sign(privateKey)
    expect(await createTokenVerifier(config).verify(good)).toMatchObject({
      userId: 'root',
      admin: true,
    })
    expect(await refusal(config, await hs256().sign(secretKey))).toMatch(/algorithm/)
    const stranger = await generateKeyPair('RS256')
    const unknownKey = await new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', kid: 'k2' })
      .setSubject('alice')
      .setExpirationTime('1h')
      .sign(stranger.privateKey)
    expect(await refusal(config, unknownKey)).toMatch(/key/i)
  })
})

describe('canAccessCampaign', () => {
  const alice: Identity = { userId: 'alice', admin: false, campaigns: null, validUntil: Infinity }
  const admin: Identity = { userId: 'root', admin: true, campaigns: null, validUntil: Infinity }

  it('lets the owner, an admin, and anyone on an unowned campaign act; nobody else', () => {
    expect(canAccessCampaign(alice, 'c', 'alice')).toBe(true)
    expect(canAccessCampaign(alice, 'c', undefined)).toBe(true)
    expect(canAccessCampaign(alice, 'c', 'bob')).toBe(false)
    expect(canAccessCampaign(admin, 'c', 'bob')).toBe(true)
  })

  it('narrows every token, an admin one too, to its campaigns claim', () => {
    expect(canAccessCampaign({ ...alice, campaigns: new Set(['a']) }, 'b', undefined)).toBe(false)
    expect(canAccessCampaign({ ...alice, campaigns: new Set(['a']) }, 'a', 'alice')).toBe(true)
    expect(canAccessCampaign({ ...admin, campaigns: new Set(['a']) }, 'b', 'bob')).toBe(false)
  })
})

describe('401 over HTTP', () => {
  afterEach(closeAll)

  it('answers every refused token with 401, WWW-Authenticate: Bearer and the error shape', async () => {
    const server = await startTestServer({ JWT_ISSUER: 'qrvisor-tests', JWT_AUDIENCE: 'qrvisor' })
    const { publicKey } = await generateKeyPair('RS256', { extractable: true })
    const pem = await exportSPKI(publicKey)
    const cases: Record<string, Record<string, string>> = {
      'no token': {},
      'not bearer': { Authorization: `Basic ${Buffer.from('a:b').toString('base64')}` },
      garbage: { Authorization: 'Bearer garbage' },
      expired: {
        Authorization: `Bearer ${await hs256({}, { expiresIn: '-1m' }).setIssuer('qrvisor-tests').setAudience('qrvisor').sign(secretKey)}`,
      },
      'alg none': {
        Authorization: `Bearer ${new UnsecuredJWT({ sub: 'alice' }).setIssuer('qrvisor-tests').setAudience('qrvisor').setExpirationTime('1h').encode()}`,
      },
      'HS/RS confusion': {
        Authorization: `Bearer ${await hs256().setIssuer('qrvisor-tests').setAudience('qrvisor').sign(new TextEncoder().encode(pem))}`,
      },
      'wrong issuer': {
        Authorization: `Bearer ${await hs256().setIssuer('evil').setAudience('qrvisor').sign(secretKey)}`,
      },
      'wrong audience': {
        Authorization: `Bearer ${await hs256().setIssuer('qrvisor-tests').setAudience('other').sign(secretKey)}`,
      },
    }
    for (const [name, headers] of Object.entries(cases)) {
      for (const [method, path] of [
        ['POST', '/api/campaigns/c1/qr-code'],
        ['GET', '/api/campaigns/c1/connection'],
        ['POST', '/api/campaigns/c1/cleanup-session'],
        ['GET', '/api/campaigns'],
      ] as const) {
        const { status, headers: answer, json } = await api(server, method, path, { headers })
        expect({ name, path, status, code: json.error.code }).toEqual({
          name,
          path,
          status: 401,
          code: 'unauthorized',
        })
        expect(answer.get('www-authenticate')).toMatch(/^Bearer/)
      }
    }
    const valid = await tokenFor('alice')
    // tokenFor signs without iss/aud, so this server refuses it too.
    expect((await api(server, 'GET', '/api/campaigns', { token: valid })).status).toBe(401)
    expect(server.simulator.counters().started).toBe(0)
  })
})
