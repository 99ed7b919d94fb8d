/**
 * Configuration from the environment: the contract's defaults, and a start that fails fast with a
 * message naming the variable.
 */
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig, MAX_DURATION_MS } from '../src/config.ts'

const SECRET = 'x'.repeat(32)
const CLUSTER_SECRET = 'c'.repeat(32)
const DATABASE_URL = 'postgres://qrvisor:pw@db:5432/qrvisor'

function failure(env: Record<string, string>): string {
  try {
    loadConfig(env)
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    return (error as Error).message
  }
  throw new Error('loadConfig accepted a bad configuration')
}

describe('loadConfig', () => {
  it("applies the contract's defaults", () => {
    const config = loadConfig({ JWT_SECRET: SECRET })
    expect(config).toMatchObject({
      port: 3000,
      host: '127.0.0.1',
      engine: 'wwebjs',
      chromePath: null,
      dataDir: './data',
      timeouts: {
        initMs: 30_000,
        scanMs: 30_000,
        authMs: 120_000,
        destroyMs: 10_000,
        killMs: 5_000,
      },
      maxSessions: null,
      jwt: { key: { kind: 'secret', secret: SECRET }, issuer: null, audience: null },
      wsRequireToken: false,
      inspect: false,
      inspectStatelyUrl: null,
      qrImage: 'png',
      simulator: { qrDelayMs: 300, qrRotateMs: 20_000, ledger: false },
      logLevel: 'info',
    })
  })

  it('reads every variable', () => {
    const config = loadConfig({
      PORT: '8080',
      HOST: '0.0.0.0',
      WA_ENGINE: 'simulated',
      CHROME_PATH: '/usr/bin/chromium',
      DATA_DIR: '/var/lib/qrvisor',
      INIT_TIMEOUT_MS: '1000',
      SCAN_TIMEOUT_MS: '2000',
      AUTH_TIMEOUT_MS: '3000',
      DESTROY_TIMEOUT_MS: '4000',
      KILL_TIMEOUT_MS: '500',
      MAX_SESSIONS: '7',
      JWT_JWKS_URL: 'https://issuer.example/.well-known/jwks.json',
      JWT_ISSUER: 'https://issuer.example',
      JWT_AUDIENCE: 'qrvisor',
      WS_REQUIRE_TOKEN: 'true',
      INSPECT: '1',
      INSPECT_STATELY_URL: 'ws://127.0.0.1:8080',
      QR_IMAGE: 'svg',
      SIM_QR_DELAY_MS: '20',
      SIM_QR_ROTATE_MS: '100',
      LOG_LEVEL: 'debug',
    })
    expect(config).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      engine: 'simulated',
      chromePath: '/usr/bin/chromium',
      dataDir: '/var/lib/qrvisor',
      timeouts: { initMs: 1000, scanMs: 2000, authMs: 3000, destroyMs: 4000, killMs: 500 },
      maxSessions: 7,
      jwt: {
        key: { kind: 'jwks', url: 'https://issuer.example/.well-known/jwks.json' },
        issuer: 'https://issuer.example',
        audience: 'qrvisor',
      },
      wsRequireToken: true,
      inspect: true,
      inspectStatelyUrl: 'ws://127.0.0.1:8080',
      qrImage: 'svg',
      simulator: { qrDelayMs: 20, qrRotateMs: 100, ledger: false },
      logLevel: 'debug',
    })
  })

  it('accepts a PEM public key with escaped newlines', () => {
    const pem = '-----BEGIN PUBLIC KEY-----\\nMFkw\\n-----END PUBLIC KEY-----'
    const config = loadConfig({ JWT_PUBLIC_KEY: pem })
    expect(config.jwt.key).toEqual({
      kind: 'publicKey',
      pem: '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----',
    })
  })

  it('treats empty variables as unset', () => {
    expect(loadConfig({ JWT_SECRET: SECRET, PORT: '', JWT_ISSUER: ' ' }).port).toBe(3000)
  })

  it('fails fast with a message naming the variable', () => {
    expect(failure({ JWT_SECRET: SECRET, PORT: 'eighty' })).toMatch(/PORT .*whole number/)
    expect(failure({ JWT_SECRET: SECRET, PORT: '70000' })).toMatch(/PORT must be at most 65535/)
    expect(failure({ JWT_SECRET: SECRET, WA_ENGINE: 'puppet' })).toMatch(/WA_ENGINE/)
    expect(failure({ JWT_SECRET: SECRET, SCAN_TIMEOUT_MS: '-5' })).toMatch(/SCAN_TIMEOUT_MS/)
    expect(failure({ JWT_SECRET: SECRET, MAX_SESSIONS: '0' })).toMatch(/MAX_SESSIONS/)
    expect(failure({ JWT_SECRET: SECRET, WS_REQUIRE_TOKEN: 'yes' })).toMatch(/WS_REQUIRE_TOKEN/)
    expect(failure({ JWT_SECRET: SECRET, QR_IMAGE: 'gif' })).toMatch(/QR_IMAGE/)
    expect(failure({ JWT_SECRET: SECRET, INSPECT_STATELY_URL: 'https://stately.ai' })).toMatch(
      /INSPECT_STATELY_URL must be a ws/
    )
    expect(failure({ JWT_SECRET: SECRET, LOG_LEVEL: 'loud' })).toMatch(/LOG_LEVEL/)
    expect(failure({ JWT_JWKS_URL: 'ftp://x' })).toMatch(/JWT_JWKS_URL/)
    expect(failure({ JWT_PUBLIC_KEY: 'not a key' })).toMatch(/JWT_PUBLIC_KEY/)
  })

  // Issue 9: SCAN_TIMEOUT_MS=9999999999 was accepted, then every QR timed out at once (Node runs
  // a timer longer than 2³¹−1 ms after 1 ms).
  it('bounds every duration at the longest a timer can wait, naming the variable', () => {
    const durations = [
      'INIT_TIMEOUT_MS',
      'SCAN_TIMEOUT_MS',
      'AUTH_TIMEOUT_MS',
      'DESTROY_TIMEOUT_MS',
      'KILL_TIMEOUT_MS',
      'SIM_QR_DELAY_MS',
      'SIM_QR_ROTATE_MS',
    ]
    for (const name of durations) {
      expect(failure({ JWT_SECRET: SECRET, [name]: '9999999999' })).toMatch(
        new RegExp(`^Invalid configuration: ${name} must be at most 2147483647 \\(about 24.8 days`)
      )
      expect(failure({ JWT_SECRET: SECRET, [name]: '2147483648' })).toMatch(name)
      expect(() => loadConfig({ JWT_SECRET: SECRET, [name]: '2147483647' })).not.toThrow()
    }
    expect(MAX_DURATION_MS).toBe(2 ** 31 - 1)
  })

  it('requires exactly one way to verify tokens, and a long enough secret', () => {
    expect(failure({})).toMatch(/JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL.*none/)
    expect(failure({ JWT_SECRET: SECRET, JWT_JWKS_URL: 'https://x.example/jwks' })).toMatch(
      /more than one/
    )
    const message = failure({ JWT_SECRET: 'short-secret' })
    expect(message).toMatch(/JWT_SECRET must be at least 32 characters/)
    expect(message).not.toContain('short-secret')
  })
})

describe('CORS_ORIGINS and WS_ALLOWED_ORIGINS', () => {
  it('reads exact origins, normalised as a browser sends them, and defaults the WebSocket list to them', () => {
    const config = loadConfig({
      JWT_SECRET: SECRET,
      CORS_ORIGINS: 'https://app.example.com/, http://localhost:5173 ,https://app.example.com',
    })
    expect(config.corsOrigins).toEqual(['https://app.example.com', 'http://localhost:5173'])
    expect(config.wsAllowedOrigins).toEqual(config.corsOrigins)
  })

  it('has no list by default, and WS_ALLOWED_ORIGINS may differ from CORS_ORIGINS', () => {
    expect(loadConfig({ JWT_SECRET: SECRET })).toMatchObject({
      corsOrigins: [],
      wsAllowedOrigins: null,
    })
    const config = loadConfig({
      JWT_SECRET: SECRET,
      CORS_ORIGINS: 'https://app.example.com',
      WS_ALLOWED_ORIGINS: 'https://ws.example.com',
    })
    expect(config.wsAllowedOrigins).toEqual(['https://ws.example.com'])
  })

  it('refuses "*" and anything that is not an origin, naming the variable', () => {
    expect(failure({ JWT_SECRET: SECRET, CORS_ORIGINS: '*' })).toMatch(
      /^Invalid configuration: CORS_ORIGINS must list exact origins: "\*" is refused/
    )
    expect(failure({ JWT_SECRET: SECRET, WS_ALLOWED_ORIGINS: 'https://a.example, *' })).toMatch(
      /WS_ALLOWED_ORIGINS must list exact origins/
    )
    for (const bad of [
      'app.example.com',
      'https://app.example.com/path',
      'ftp://x.example',
      'https://u:p@x.example',
    ]) {
      expect(failure({ JWT_SECRET: SECRET, CORS_ORIGINS: bad })).toMatch(
        /CORS_ORIGINS must be a comma-separated list of origins like https:\/\/app\.example\.com/
      )
    }
  })

  it('reads the store, the restore and the webhooks, with their defaults', () => {
    const defaults = loadConfig({ JWT_SECRET: SECRET })
    expect(defaults.store).toEqual({
      databaseUrl: null,
      historyMaxEntries: 50,
      endedSessionsMax: 20,
      endedSessionsTtlMs: 7 * 24 * 60 * 60_000,
      writeLagMs: 50,
      writeQueueMax: 100_000,
    })
    expect(defaults.restoreConcurrency).toBe(2)
    expect(loadConfig({ JWT_SECRET: SECRET, WA_ENGINE: 'simulated' }).restoreConcurrency).toBe(100)
    expect(defaults.webhooks).toMatchObject({ service: null, allowPrivate: false, maxAttempts: 8 })

    const hook = `whsec_${Buffer.alloc(32, 1).toString('base64')}`
    const set = loadConfig({
      JWT_SECRET: SECRET,
      DATABASE_URL: 'postgres://qrvisor:pw@db:5432/qrvisor',
      CLUSTER_SECRET: CLUSTER_SECRET,
      RESTORE_CONCURRENCY: '10',
      WEBHOOK_URL: 'https://backend.example.com/hook',
      WEBHOOK_SECRET: hook,
      WEBHOOK_EVENTS: 'session.status, session.qr',
    })
    expect(set.store.databaseUrl).toBe('postgres://qrvisor:pw@db:5432/qrvisor')
    expect(set.restoreConcurrency).toBe(10)
    expect(set.webhooks.service).toEqual({
      url: 'https://backend.example.com/hook',
      secret: hook,
      events: ['session.status', 'session.qr'],
    })
  })

  it('refuses a bad store or webhook setting, without echoing a password or a secret', () => {
    const badUrl = failure({ JWT_SECRET: SECRET, DATABASE_URL: 'mysql://u:hunter2@db/x' })
    expect(badUrl).toMatch(/DATABASE_URL must be a postgres/)
    expect(badUrl).not.toContain('hunter2')
    expect(failure({ JWT_SECRET: SECRET, RESTORE_CONCURRENCY: '0' })).toMatch(
      /RESTORE_CONCURRENCY must be at least 1/
    )
    expect(failure({ JWT_SECRET: SECRET, WEBHOOK_URL: 'https://x.example.com/' })).toMatch(
      /WEBHOOK_URL and WEBHOOK_SECRET go together/
    )
    const badSecret = failure({
      JWT_SECRET: SECRET,
      WEBHOOK_URL: 'https://x.example.com/',
      WEBHOOK_SECRET: 'not-a-secret-at-all',
    })
    expect(badSecret).toMatch(/WEBHOOK_SECRET must be a Standard Webhooks secret/)
    expect(badSecret).not.toContain('not-a-secret-at-all')
    expect(failure({ JWT_SECRET: SECRET, WEBHOOK_EVENTS: 'session.everything' })).toMatch(
      /WEBHOOK_EVENTS must list session.status/
    )
  })

  it('reads WA_PROXY (issue 14), and refuses a bad one without echoing its password', () => {
    expect(loadConfig({ JWT_SECRET: SECRET }).proxy).toBeNull()
    expect(
      loadConfig({ JWT_SECRET: SECRET, WA_PROXY: 'http://ops:pw@gateway.example:8080' }).proxy
    ).toEqual({
      server: 'http://gateway.example:8080',
      credentials: { username: 'ops', password: 'pw' },
    })
    const bad = failure({ JWT_SECRET: SECRET, WA_PROXY: 'socks5://ops:hunter2@gateway.example' })
    expect(bad).toMatch(/WA_PROXY cannot carry credentials with socks5/)
    expect(bad).not.toContain('hunter2')
    expect(failure({ JWT_SECRET: SECRET, WA_PROXY: 'gateway.example:8080' })).toMatch(
      /WA_PROXY must/
    )
  })
})

describe('LIVENESS_* (issue 15)', () => {
  it('probes every 30 s, answers within 10 s, 2 misses by default; reads each variable', () => {
    expect(loadConfig({ JWT_SECRET: SECRET }).liveness).toEqual({
      intervalMs: 30_000,
      timeoutMs: 10_000,
      misses: 2,
    })
    const config = loadConfig({
      JWT_SECRET: SECRET,
      LIVENESS_INTERVAL_MS: '60000',
      LIVENESS_TIMEOUT_MS: '5000',
      LIVENESS_MISSES: '3',
    })
    expect(config.liveness).toEqual({ intervalMs: 60_000, timeoutMs: 5_000, misses: 3 })
  })

  it('refuses a probe of no time, no misses, or a timeout longer than the interval', () => {
    expect(failure({ JWT_SECRET: SECRET, LIVENESS_INTERVAL_MS: '0' })).toBe(
      'Invalid configuration: LIVENESS_INTERVAL_MS must be at least 1 (got "0").'
    )
    expect(failure({ JWT_SECRET: SECRET, LIVENESS_MISSES: '0' })).toBe(
      'Invalid configuration: LIVENESS_MISSES must be at least 1 (got "0").'
    )
    expect(
      failure({ JWT_SECRET: SECRET, LIVENESS_INTERVAL_MS: '1000', LIVENESS_TIMEOUT_MS: '2000' })
    ).toBe(
      'Invalid configuration: LIVENESS_TIMEOUT_MS (2000) must not exceed LIVENESS_INTERVAL_MS (1000): a probe is answered before the next one.'
    )
  })
})

describe('the cluster: NODE_ID, NODE_URL, CLUSTER_SECRET, LEASE_TTL_MS, DRAIN_TIMEOUT_MS (issue 12)', () => {
  it('leaves the node id and URL to be derived, and leases last 15 s, by default', () => {
    expect(loadConfig({ JWT_SECRET: SECRET }).cluster).toEqual({
      nodeId: null,
      nodeUrl: null,
      secret: null,
      leaseTtlMs: 15_000,
      drainMs: 60_000,
    })
    expect(loadConfig({ JWT_SECRET: SECRET, DATABASE_URL, CLUSTER_SECRET }).cluster).toEqual({
      nodeId: null,
      nodeUrl: null,
      secret: CLUSTER_SECRET,
      leaseTtlMs: 15_000,
      drainMs: 60_000,
    })
  })

  it('reads each variable; NODE_URL is kept as an origin', () => {
    const config = loadConfig({
      JWT_SECRET: SECRET,
      DATABASE_URL,
      CLUSTER_SECRET,
      NODE_ID: 'web-1.eu:3000',
      NODE_URL: 'https://Web-1.internal:8443/',
      LEASE_TTL_MS: '30000',
      DRAIN_TIMEOUT_MS: '90000',
    })
    expect(config.cluster).toEqual({
      nodeId: 'web-1.eu:3000',
      nodeUrl: 'https://web-1.internal:8443',
      secret: CLUSTER_SECRET,
      leaseTtlMs: 30_000,
      drainMs: 90_000,
    })
  })

  it('requires CLUSTER_SECRET with DATABASE_URL, saying how to make one', () => {
    expect(failure({ JWT_SECRET: SECRET, DATABASE_URL })).toBe(
      'Invalid configuration: CLUSTER_SECRET is required with DATABASE_URL (every node on the ' +
        'database is a cluster member, and the nodes authenticate their calls to each other with ' +
        'it): give every node the same one, at least 32 characters; to make one: ' +
        'CLUSTER_SECRET=$(openssl rand -hex 32).'
    )
  })

  it('refuses an INIT_TIMEOUT_MS a takeover would always outlast, with DATABASE_URL only', () => {
    const env = { JWT_SECRET: SECRET, DATABASE_URL, CLUSTER_SECRET, KILL_TIMEOUT_MS: '100' }
    expect(failure({ ...env, INIT_TIMEOUT_MS: '2100' })).toBe(
      'Invalid configuration: INIT_TIMEOUT_MS (2100) must exceed KILL_TIMEOUT_MS + 2000 ms (2100) ' +
        'with DATABASE_URL: a node that takes a campaign over from a node that died waits that ' +
        'long before launching its browser, within the start deadline, and every such restore ' +
        'would time out.'
    )
    expect(loadConfig({ ...env, INIT_TIMEOUT_MS: '2101' }).timeouts.initMs).toBe(2101)
    expect(loadConfig({ JWT_SECRET: SECRET, INIT_TIMEOUT_MS: '2000' }).timeouts.initMs).toBe(2000)
  })

  it('refuses a short CLUSTER_SECRET without echoing it', () => {
    const message = failure({ JWT_SECRET: SECRET, DATABASE_URL, CLUSTER_SECRET: 'hunter2-hunter2' })
    expect(message).toBe(
      'Invalid configuration: CLUSTER_SECRET must be at least 32 characters; to make one: openssl rand -hex 32 (got "[redacted]").'
    )
    expect(message).not.toContain('hunter2')
  })

  it('refuses a NODE_URL with a path, a query or credentials, and a NODE_ID with spaces', () => {
    for (const url of [
      'http://web-1:3000/qrvisor',
      'http://web-1:3000/?x=1',
      'http://ops:pw@web-1:3000',
      'ftp://web-1',
      'web-1:3000',
    ]) {
      expect(failure({ JWT_SECRET: SECRET, NODE_URL: url })).toMatch(
        /^Invalid configuration: NODE_URL must be an http\(s\) URL without a path or query/
      )
    }
    expect(failure({ JWT_SECRET: SECRET, NODE_ID: 'web 1' })).toMatch(
      /^Invalid configuration: NODE_ID must be 1 to 128 letters, digits and/
    )
    expect(failure({ JWT_SECRET: SECRET, NODE_ID: 'x'.repeat(129) })).toMatch(/NODE_ID must/)
  })

  it('refuses a LEASE_TTL_MS that leaves no time to fence with KILL_TIMEOUT_MS', () => {
    const message = failure({
      JWT_SECRET: SECRET,
      DATABASE_URL,
      CLUSTER_SECRET,
      LEASE_TTL_MS: '9000',
    })
    expect(message).toMatch(/^Invalid configuration: LEASE_TTL_MS 9000 leaves no time to fence/)
    expect(message).toMatch(/set LEASE_TTL_MS to at least 10660, or lower KILL_TIMEOUT_MS\.$/)
    expect(
      failure({ JWT_SECRET: SECRET, DATABASE_URL, CLUSTER_SECRET, KILL_TIMEOUT_MS: '10000' })
    ).toMatch(/LEASE_TTL_MS 15000 leaves no time to fence/)
    expect(
      loadConfig({
        JWT_SECRET: SECRET,
        DATABASE_URL,
        CLUSTER_SECRET,
        KILL_TIMEOUT_MS: '10000',
        LEASE_TTL_MS: '20000',
      }).cluster.leaseTtlMs
    ).toBe(20_000)
  })

  it('checks the lease timing only in a cluster: a single node may keep a long KILL_TIMEOUT_MS', () => {
    expect(loadConfig({ JWT_SECRET: SECRET, KILL_TIMEOUT_MS: '60000' }).timeouts.killMs).toBe(
      60_000
    )
  })
})
