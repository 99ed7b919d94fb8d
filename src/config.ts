/**
 * Configuration from the environment, exactly the contract's table (plus the simulator's knobs,
 * `KILL_TIMEOUT_MS` and `LOG_LEVEL`). Everything is validated at start: a bad value stops the start
 * with a `ConfigError` whose message names the variable and says what it expects.
 *
 * @module
 */
import { z } from 'zod'
import { checkLeaseTiming, LEASE_MARGIN_MS } from './leaseTiming.ts'
import { parseProxy, type ProxySettings } from './proxy.ts'

/** How bearer tokens are verified: exactly one of the three is configured. */
export type JwtKeyConfig =
  | { kind: 'secret'; secret: string }
  | { kind: 'publicKey'; pem: string }
  | { kind: 'jwks'; url: string }

export interface JwtConfig {
  key: JwtKeyConfig
  issuer: string | null
  audience: string | null
}

export interface Config {
  port: number
  host: string
  engine: 'wwebjs' | 'simulated'
  /** Chromium for `wwebjs`; null means "find it on the machine". */
  chromePath: string | null
  dataDir: string
  timeouts: { initMs: number; scanMs: number; authMs: number; destroyMs: number; killMs: number }
  /** `LIVENESS_INTERVAL_MS`, `LIVENESS_TIMEOUT_MS`, `LIVENESS_MISSES`: the probe of ready sessions. */
  liveness: { intervalMs: number; timeoutMs: number; misses: number }
  /** `MAX_SESSIONS`; null when unset: the engine decides (sized to the machine for wwebjs). */
  maxSessions: number | null
  jwt: JwtConfig
  wsRequireToken: boolean
  inspect: boolean
  /** `INSPECT_STATELY_URL`: also stream inspection to Stately's inspector (needs `INSPECT`). */
  inspectStatelyUrl: string | null
  qrImage: 'png' | 'svg'
  /** `CORS_ORIGINS`: exact origins whose pages may call `/api` from a browser; empty: none. */
  corsOrigins: string[]
  /**
   * `WS_ALLOWED_ORIGINS` (default: `CORS_ORIGINS`): origins whose pages may open a WebSocket,
   * besides the service's own; null: any (no list configured).
   */
  wsAllowedOrigins: string[] | null
  /** `SIM_LEDGER`: a test aid, the simulated engines' start and stop records under `DATA_DIR`. */
  simulator: { qrDelayMs: number; qrRotateMs: number; ledger: boolean }
  /** `WA_PROXY`: the proxy of every campaign that sets none of its own; null: none. */
  proxy: ProxySettings | null
  store: StoreConfig
  cluster: ClusterConfig
  webhooks: WebhookConfig
  /** `RESTORE_CONCURRENCY`: restored sessions launching at once (default: 2 wwebjs, 100 simulated). */
  restoreConcurrency: number
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
}

export interface StoreConfig {
  /** `DATABASE_URL`: PostgreSQL; null: the embedded SQLite file `DATA_DIR/qrvisor.db`. */
  databaseUrl: string | null
  /** `HISTORY_MAX_ENTRIES`: history entries kept per stored session. */
  historyMaxEntries: number
  /** `ENDED_SESSIONS_MAX`: ended sessions kept per campaign. */
  endedSessionsMax: number
  /** `ENDED_SESSIONS_TTL_MS`: ended sessions older than this are pruned (the last one stays). */
  endedSessionsTtlMs: number
  /** `STORE_WRITE_LAG_MS`: how long a status change may wait before it is written. */
  writeLagMs: number
  /** `STORE_WRITE_QUEUE_MAX`: changed records queued at most while the database fails. */
  writeQueueMax: number
}

/** A cluster of nodes on one PostgreSQL (`DATABASE_URL`); see src/cluster. */
export interface ClusterConfig {
  /** `NODE_ID`; null: `<hostname>:<port>`, once the node listens. */
  nodeId: string | null
  /** `NODE_URL`: how the other nodes reach this one (an origin); null: `http://HOST:PORT`. */
  nodeUrl: string | null
  /** `CLUSTER_SECRET`: authenticates node-to-node calls; set whenever `DATABASE_URL` is. */
  secret: string | null
  /** `LEASE_TTL_MS`: how long a campaign's lease lasts without a renewal. */
  leaseTtlMs: number
  /** `DRAIN_TIMEOUT_MS`: how long a stopping node may spend handing its linked campaigns over. */
  drainMs: number
}

export interface WebhookConfig {
  /** `WEBHOOK_URL`, `WEBHOOK_SECRET`, `WEBHOOK_EVENTS`: the service-wide endpoint; null: none. */
  service: { url: string; secret: string; events: string[] } | null
  /** `WEBHOOK_ALLOW_PRIVATE` */
  allowPrivate: boolean
  /** `WEBHOOK_TIMEOUT_MS` */
  timeoutMs: number
  /** `WEBHOOK_RETRY_BASE_MS` */
  retryBaseMs: number
  /** `WEBHOOK_RETRY_MAX_MS` */
  retryMaxMs: number
  /** `WEBHOOK_MAX_ATTEMPTS` */
  maxAttempts: number
  /** `WEBHOOK_CONCURRENCY` */
  concurrency: number
  /** `WEBHOOK_ENDPOINT_CONCURRENCY` */
  endpointConcurrency: number
  /** `WEBHOOK_RETENTION_MS` */
  retentionMs: number
}

/** A configuration value is missing or wrong; the message names the variable. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

/** HS256 keys shorter than the hash output are brute-forceable (RFC 7518 §3.2). */
const MIN_SECRET_LENGTH = 32

/** The default `MAX_SESSIONS` of the simulated engine (it costs a few kB per session). */
export const SIMULATED_MAX_SESSIONS = 10_000

const integer = (min: number, max = Number.MAX_SAFE_INTEGER, maxMeaning?: string) =>
  z
    .string()
    .regex(/^\d+$/, { error: `must be a whole number between ${min} and ${max}` })
    .transform(Number)
    .pipe(
      z
        .number()
        .int()
        .min(min, { error: `must be at least ${min}` })
        .max(max, { error: `must be at most ${max}${maxMeaning ? ` (${maxMeaning})` : ''}` })
    )

/**
 * The longest delay a Node timer can wait: 2³¹−1 ms, about 24.8 days. Node runs a longer one after
 * 1 ms (with only a `TimeoutOverflowWarning`), so every duration is bounded here.
 */
export const MAX_DURATION_MS = 2_147_483_647

/** A duration in milliseconds, from `min` up to the longest a timer can wait. */
const duration = (min: number) =>
  integer(min, MAX_DURATION_MS, 'about 24.8 days, the longest a timer can wait')

const boolean = z
  .enum(['true', 'false', '1', '0'], { error: 'must be true or false' })
  .transform((value) => value === 'true' || value === '1')

const nonEmpty = z.string().min(1)

/**
 * A comma-separated list of exact origins (`scheme://host[:port]`, as a browser sends them in
 * `Origin`). `*` is refused: every API call carries a bearer token, so a page of any site must
 * not be able to use one.
 */
const originList = z.string().transform((value, ctx) => {
  const origins: string[] = []
  for (const entry of value.split(',').map((part) => part.trim())) {
    if (entry === '') continue
    if (entry === '*') {
      ctx.addIssue({
        code: 'custom',
        message:
          'must list exact origins: "*" is refused because every call carries a bearer token',
      })
      return z.NEVER
    }
    const origin = parseOrigin(entry)
    if (origin === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `must be a comma-separated list of origins like https://app.example.com (${JSON.stringify(entry)} is not one)`,
      })
      return z.NEVER
    }
    if (!origins.includes(origin)) origins.push(origin)
  }
  return origins
})

/** `entry` as the browser would send it in `Origin`, or undefined if it is not an origin. */
function parseOrigin(entry: string): string | undefined {
  let url: URL
  try {
    url = new URL(entry)
  } catch {
    return undefined
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined
  if (url.username || url.password || url.search || url.hash) return undefined
  if (url.pathname !== '/') return undefined
  return url.origin
}

/** An http(s) origin: how other nodes reach this one. A path, query or credentials are refused. */
const nodeUrl = z.string().transform((value, ctx) => {
  const origin = parseOrigin(value)
  if (origin !== undefined) return origin
  ctx.addIssue({
    code: 'custom',
    message: 'must be an http(s) URL without a path or query, like http://10.0.0.5:3000',
  })
  return z.NEVER
})

const environmentSchema = z.object({
  PORT: integer(0, 65_535).default(3000),
  HOST: nonEmpty.default('127.0.0.1'),
  WA_ENGINE: z
    .enum(['wwebjs', 'simulated'], { error: 'must be wwebjs or simulated' })
    .default('wwebjs'),
  CHROME_PATH: nonEmpty.optional(),
  DATA_DIR: nonEmpty.default('./data'),
  INIT_TIMEOUT_MS: duration(1).default(30_000),
  SCAN_TIMEOUT_MS: duration(1).default(30_000),
  AUTH_TIMEOUT_MS: duration(1).default(120_000),
  DESTROY_TIMEOUT_MS: duration(1).default(10_000),
  KILL_TIMEOUT_MS: duration(1).default(5_000),
  MAX_SESSIONS: integer(1).optional(),
  LIVENESS_INTERVAL_MS: duration(1).default(30_000),
  LIVENESS_TIMEOUT_MS: duration(1).default(10_000),
  LIVENESS_MISSES: integer(1, 100).default(2),
  JWT_SECRET: z
    .string()
    .min(MIN_SECRET_LENGTH, {
      error: `must be at least ${MIN_SECRET_LENGTH} characters (HS256 needs a 256-bit secret)`,
    })
    .optional(),
  JWT_PUBLIC_KEY: z
    .string()
    .transform((pem) => pem.replace(/\\n/g, '\n'))
    .pipe(
      z.string().regex(/-----BEGIN PUBLIC KEY-----[\s\S]+-----END PUBLIC KEY-----/, {
        error: 'must be a PEM public key (-----BEGIN PUBLIC KEY----- …)',
      })
    )
    .optional(),
  JWT_JWKS_URL: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
  JWT_ISSUER: nonEmpty.optional(),
  JWT_AUDIENCE: nonEmpty.optional(),
  WS_REQUIRE_TOKEN: boolean.default(false),
  INSPECT: boolean.default(false),
  INSPECT_STATELY_URL: z
    .url({ protocol: /^wss?$/, error: 'must be a ws:// or wss:// URL' })
    .optional(),
  QR_IMAGE: z.enum(['png', 'svg'], { error: 'must be png or svg' }).default('png'),
  CORS_ORIGINS: originList.optional(),
  WS_ALLOWED_ORIGINS: originList.optional(),
  SIM_QR_DELAY_MS: duration(0).default(300),
  SIM_QR_ROTATE_MS: duration(1).default(20_000),
  SIM_LEDGER: boolean.default(false),
  WA_PROXY: z
    .string()
    .transform((text, context) => {
      const parsed = parseProxy(text)
      if (parsed.ok) return parsed.proxy
      context.addIssue({ code: 'custom', message: parsed.reason })
      return z.NEVER
    })
    .optional(),
  DATABASE_URL: z
    .url({ protocol: /^postgres(ql)?$/, error: 'must be a postgres:// or postgresql:// URL' })
    .optional(),
  NODE_ID: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/, {
      error:
        'must be 1 to 128 letters, digits and . _ : @ - (starting with a letter or digit), like web-1 or web-1:3000',
    })
    .optional(),
  NODE_URL: nodeUrl.optional(),
  CLUSTER_SECRET: z
    .string()
    .min(MIN_SECRET_LENGTH, {
      error: `must be at least ${MIN_SECRET_LENGTH} characters; to make one: openssl rand -hex 32`,
    })
    .optional(),
  LEASE_TTL_MS: duration(1).default(15_000),
  DRAIN_TIMEOUT_MS: duration(0).default(60_000),
  HISTORY_MAX_ENTRIES: integer(1, 1_000).default(50),
  ENDED_SESSIONS_MAX: integer(1, 10_000).default(20),
  ENDED_SESSIONS_TTL_MS: duration(1).default(7 * 24 * 60 * 60_000),
  STORE_WRITE_LAG_MS: duration(0).default(50),
  STORE_WRITE_QUEUE_MAX: integer(1).default(100_000),
  RESTORE_CONCURRENCY: integer(1, 10_000).optional(),
  WEBHOOK_URL: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
  WEBHOOK_SECRET: z
    .string()
    .refine(
      (secret) => {
        const base64 = secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : ''
        return /^[A-Za-z0-9+/]+={0,2}$/.test(base64) && Buffer.from(base64, 'base64').length >= 24
      },
      { error: 'must be a Standard Webhooks secret: whsec_ and base64 of at least 24 random bytes' }
    )
    .optional(),
  WEBHOOK_EVENTS: z
    .string()
    .transform((value) =>
      value
        .split(',')
        .map((name) => name.trim())
        .filter(Boolean)
    )
    .pipe(
      z.array(
        z.enum(['session.status', 'session.qr'], {
          error: 'must list session.status and/or session.qr, comma-separated',
        })
      )
    )
    .optional(),
  WEBHOOK_ALLOW_PRIVATE: boolean.default(false),
  WEBHOOK_TIMEOUT_MS: duration(1).default(10_000),
  WEBHOOK_RETRY_BASE_MS: duration(1).default(5_000),
  WEBHOOK_RETRY_MAX_MS: duration(1).default(60 * 60_000),
  WEBHOOK_MAX_ATTEMPTS: integer(1, 100).default(8),
  WEBHOOK_CONCURRENCY: integer(1, 1_000).default(32),
  WEBHOOK_ENDPOINT_CONCURRENCY: integer(1, 100).default(4),
  WEBHOOK_RETENTION_MS: duration(1).default(7 * 24 * 60 * 60_000),
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
      error: 'must be one of fatal, error, warn, info, debug, trace, silent',
    })
    .default('info'),
})

/**
 * Reads and validates the configuration.
 *
 * Empty variables count as unset. Exactly one of `JWT_SECRET`, `JWT_PUBLIC_KEY` and
 * `JWT_JWKS_URL` must be set.
 *
 * @throws ConfigError naming the first variable that is wrong.
 * @example
 * const config = loadConfig({ WA_ENGINE: 'simulated', JWT_SECRET: 'x'.repeat(32) })
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const present: Record<string, string> = {}
  for (const name of Object.keys(environmentSchema.shape)) {
    const value = env[name]
    if (value !== undefined && value.trim() !== '') present[name] = value.trim()
  }
  const parsed = environmentSchema.safeParse(present)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const name = String(issue?.path[0] ?? 'environment')
    const got =
      present[name] === undefined ? '' : ` (got ${JSON.stringify(redact(name, present[name]))})`
    throw new ConfigError(`Invalid configuration: ${name} ${issue?.message ?? 'is invalid'}${got}.`)
  }
  const e = parsed.data

  const keys: JwtKeyConfig[] = []
  if (e.JWT_SECRET !== undefined) keys.push({ kind: 'secret', secret: e.JWT_SECRET })
  if (e.JWT_PUBLIC_KEY !== undefined) keys.push({ kind: 'publicKey', pem: e.JWT_PUBLIC_KEY })
  if (e.JWT_JWKS_URL !== undefined) keys.push({ kind: 'jwks', url: e.JWT_JWKS_URL })
  if ((e.WEBHOOK_URL === undefined) !== (e.WEBHOOK_SECRET === undefined)) {
    throw new ConfigError(
      'Invalid configuration: WEBHOOK_URL and WEBHOOK_SECRET go together ' +
        `(${e.WEBHOOK_URL === undefined ? 'WEBHOOK_SECRET is set without WEBHOOK_URL' : 'WEBHOOK_URL is set without WEBHOOK_SECRET'}); ` +
        'to make a secret: echo "whsec_$(openssl rand -base64 32)".'
    )
  }
  if (e.LIVENESS_TIMEOUT_MS > e.LIVENESS_INTERVAL_MS) {
    throw new ConfigError(
      `Invalid configuration: LIVENESS_TIMEOUT_MS (${e.LIVENESS_TIMEOUT_MS}) must not exceed ` +
        `LIVENESS_INTERVAL_MS (${e.LIVENESS_INTERVAL_MS}): a probe is answered before the next one.`
    )
  }
  if (e.DATABASE_URL !== undefined) {
    if (e.CLUSTER_SECRET === undefined) {
      throw new ConfigError(
        'Invalid configuration: CLUSTER_SECRET is required with DATABASE_URL (every node on the ' +
          'database is a cluster member, and the nodes authenticate their calls to each other with ' +
          'it): give every node the same one, at least 32 characters; to make one: ' +
          'CLUSTER_SECRET=$(openssl rand -hex 32).'
      )
    }
    // Leases matter only in a cluster: a single node may keep a long KILL_TIMEOUT_MS.
    const timing = checkLeaseTiming({ ttlMs: e.LEASE_TTL_MS, killBoundMs: e.KILL_TIMEOUT_MS })
    if (timing !== null) throw new ConfigError(`Invalid configuration: ${timing}.`)
    // A takeover waits KILL_TIMEOUT_MS + 2 s before launching, inside the start's deadline.
    const takeoverWaitMs = e.KILL_TIMEOUT_MS + LEASE_MARGIN_MS
    if (e.INIT_TIMEOUT_MS <= takeoverWaitMs) {
      throw new ConfigError(
        `Invalid configuration: INIT_TIMEOUT_MS (${e.INIT_TIMEOUT_MS}) must exceed KILL_TIMEOUT_MS ` +
          `+ ${LEASE_MARGIN_MS} ms (${takeoverWaitMs}) with DATABASE_URL: a node that takes a ` +
          'campaign over from a node that died waits that long before launching its browser, ' +
          'within the start deadline, and every such restore would time out.'
      )
    }
  }
  const [key] = keys
  if (key === undefined || keys.length > 1) {
    throw new ConfigError(
      'Invalid configuration: set exactly one of JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL ' +
        `(${keys.length === 0 ? 'none is set' : 'more than one is set'}); ` +
        'for a quick start, JWT_SECRET=$(openssl rand -hex 32).'
    )
  }

  return {
    port: e.PORT,
    host: e.HOST,
    engine: e.WA_ENGINE,
    chromePath: e.CHROME_PATH ?? null,
    dataDir: e.DATA_DIR,
    timeouts: {
      initMs: e.INIT_TIMEOUT_MS,
      scanMs: e.SCAN_TIMEOUT_MS,
      authMs: e.AUTH_TIMEOUT_MS,
      destroyMs: e.DESTROY_TIMEOUT_MS,
      killMs: e.KILL_TIMEOUT_MS,
    },
    liveness: {
      intervalMs: e.LIVENESS_INTERVAL_MS,
      timeoutMs: e.LIVENESS_TIMEOUT_MS,
      misses: e.LIVENESS_MISSES,
    },
    maxSessions: e.MAX_SESSIONS ?? null,
    jwt: { key, issuer: e.JWT_ISSUER ?? null, audience: e.JWT_AUDIENCE ?? null },
    wsRequireToken: e.WS_REQUIRE_TOKEN,
    inspect: e.INSPECT,
    inspectStatelyUrl: e.INSPECT_STATELY_URL ?? null,
    qrImage: e.QR_IMAGE,
    corsOrigins: e.CORS_ORIGINS ?? [],
    wsAllowedOrigins: e.WS_ALLOWED_ORIGINS ?? (e.CORS_ORIGINS?.length ? e.CORS_ORIGINS : null),
    simulator: {
      qrDelayMs: e.SIM_QR_DELAY_MS,
      qrRotateMs: e.SIM_QR_ROTATE_MS,
      ledger: e.SIM_LEDGER,
    },
    proxy: e.WA_PROXY ?? null,
    store: {
      databaseUrl: e.DATABASE_URL ?? null,
      historyMaxEntries: e.HISTORY_MAX_ENTRIES,
      endedSessionsMax: e.ENDED_SESSIONS_MAX,
      endedSessionsTtlMs: e.ENDED_SESSIONS_TTL_MS,
      writeLagMs: e.STORE_WRITE_LAG_MS,
      writeQueueMax: e.STORE_WRITE_QUEUE_MAX,
    },
    cluster: {
      nodeId: e.NODE_ID ?? null,
      nodeUrl: e.NODE_URL ?? null,
      secret: e.CLUSTER_SECRET ?? null,
      leaseTtlMs: e.LEASE_TTL_MS,
      drainMs: e.DRAIN_TIMEOUT_MS,
    },
    webhooks: {
      service:
        e.WEBHOOK_URL !== undefined && e.WEBHOOK_SECRET !== undefined
          ? {
              url: e.WEBHOOK_URL,
              secret: e.WEBHOOK_SECRET,
              events: e.WEBHOOK_EVENTS ?? ['session.status'],
            }
          : null,
      allowPrivate: e.WEBHOOK_ALLOW_PRIVATE,
      timeoutMs: e.WEBHOOK_TIMEOUT_MS,
      retryBaseMs: e.WEBHOOK_RETRY_BASE_MS,
      retryMaxMs: e.WEBHOOK_RETRY_MAX_MS,
      maxAttempts: e.WEBHOOK_MAX_ATTEMPTS,
      concurrency: e.WEBHOOK_CONCURRENCY,
      endpointConcurrency: e.WEBHOOK_ENDPOINT_CONCURRENCY,
      retentionMs: e.WEBHOOK_RETENTION_MS,
    },
    restoreConcurrency: e.RESTORE_CONCURRENCY ?? (e.WA_ENGINE === 'wwebjs' ? 2 : 100),
    logLevel: e.LOG_LEVEL,
  }
}

/** Secrets are never echoed back in an error message. */
function redact(name: string, value: string | undefined): string | undefined {
  if (name === 'JWT_SECRET' || name === 'WEBHOOK_SECRET' || name === 'CLUSTER_SECRET') {
    return '[redacted]'
  }
  // A database URL or a proxy may carry a password.
  if ((name === 'DATABASE_URL' || name === 'WA_PROXY') && value) {
    return value.replace(/\/\/[^@/]*@/, '//[redacted]@')
  }
  return value
}
