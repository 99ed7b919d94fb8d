/**
 * `npm run demo`: qrvisor on localhost with the simulated WhatsApp engine, a fresh random JWT
 * secret, the inspector on, and a few campaigns in different states. It prints the dashboard and
 * inspector URLs with a demo admin token in the URL fragment (browsers never send the fragment to
 * the server, so the token stays out of its logs). Ctrl-C shuts the service down cleanly.
 *
 * Any variable of the configuration table may be set to override the demo's choices, e.g.
 * `PORT=4000 SCAN_TIMEOUT_MS=20000 npm run demo`.
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import { loadConfig, ConfigError } from '../src/config.ts'
import { superviseProcess } from '../src/lifecycle.ts'
import { createLogger } from '../src/logger.ts'
import { startServer, type RunningServer } from '../src/server.ts'
import type { SessionStatus } from '../src/session/api.ts'
import { SignJWT } from 'jose'

const DEMO_USER = 'demo-admin'
const TOKEN_TTL_SECONDS = 12 * 60 * 60

/** The demo's own settings; variables the caller sets win over them. */
const DEMO_DEFAULTS: Record<string, string> = {
  PORT: '3000',
  HOST: '127.0.0.1',
  INIT_TIMEOUT_MS: '5000',
  SCAN_TIMEOUT_MS: '90000',
  LOG_LEVEL: 'warn',
}

/** Settings the demo always uses: the simulated engine, its own secret, the inspector. */
const PASSED_THROUGH = [
  'PORT',
  'HOST',
  'INIT_TIMEOUT_MS',
  'SCAN_TIMEOUT_MS',
  'AUTH_TIMEOUT_MS',
  'DESTROY_TIMEOUT_MS',
  'KILL_TIMEOUT_MS',
  'MAX_SESSIONS',
  'QR_IMAGE',
  'SIM_QR_DELAY_MS',
  'SIM_QR_ROTATE_MS',
  'LOG_LEVEL',
  'DATA_DIR',
]

interface Seed {
  campaignId: string
  /** What the simulated phone does for this campaign's session. */
  startup: 'qr' | 'hang' | 'error'
  scan: boolean
  wanted: SessionStatus
  describe: string
}

const SEEDS: Seed[] = [
  {
    campaignId: 'welcome-series',
    startup: 'qr',
    scan: true,
    wanted: 'ready',
    describe: 'linked: the phone scanned its QR',
  },
  {
    campaignId: 'spring-sale',
    startup: 'qr',
    scan: false,
    wanted: 'awaitingScan',
    describe: 'awaiting a scan: press “Scan” on the dashboard, or watch it time out',
  },
  {
    campaignId: 'autumn-promo',
    startup: 'hang',
    scan: false,
    wanted: 'timedOut',
    describe: 'timed out: WhatsApp never showed a QR (init_timeout)',
  },
  {
    campaignId: 'broken-phone',
    startup: 'error',
    scan: false,
    wanted: 'failed',
    describe: 'failed: the engine could not start (engine_failed)',
  },
]

const bold = (text: string) => (process.stdout.isTTY ? `\x1b[1m${text}\x1b[22m` : text)
const dim = (text: string) => (process.stdout.isTTY ? `\x1b[2m${text}\x1b[22m` : text)
const cyan = (text: string) => (process.stdout.isTTY ? `\x1b[36m${text}\x1b[39m` : text)

async function main(): Promise<void> {
  const secret = randomBytes(32).toString('base64url')
  const env: Record<string, string> = { ...DEMO_DEFAULTS }
  for (const name of PASSED_THROUGH) {
    const value = process.env[name]
    if (value !== undefined && value.trim() !== '') env[name] = value
  }
  Object.assign(env, { WA_ENGINE: 'simulated', JWT_SECRET: secret, INSPECT: 'true' })

  const config = loadConfig(env)
  const logger = createLogger({ level: config.logLevel })
  let server: RunningServer
  try {
    server = await startServer(config, { logger })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || process.env.PORT) throw error
    console.log(dim(`Port ${config.port} is taken; using a free one instead.`))
    server = await startServer({ ...config, port: 0 }, { logger })
  }

  // scripts/token.ts runs its command line when imported, so the demo signs its own (same claims).
  const token = await new SignJWT({ roles: ['admin'] })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(DEMO_USER)
    .setIssuedAt()
    .setExpirationTime(`${TOKEN_TTL_SECONDS}s`)
    .sign(new TextEncoder().encode(secret))
  const base = server.url.replace('127.0.0.1', 'localhost')
  const fragment = `#token=${token}`

  console.log()
  console.log(bold('qrvisor demo') + dim(' · simulated WhatsApp engine · inspector on'))
  console.log()
  console.log(`  ${bold('Dashboard')}  ${cyan(`${base}/${fragment}`)}`)
  console.log(`  ${bold('Inspector')}  ${cyan(`${base}/inspect${fragment}`)}`)
  console.log()
  console.log(
    dim(
      `  The token is for "${DEMO_USER}" (admin), valid ${TOKEN_TTL_SECONDS / 3600} h, signed with a\n` +
        '  secret made for this run only. It rides in the URL fragment, which never reaches the server.\n' +
        `  QR codes expire ${config.timeouts.scanMs / 1000} s after they are shown ` +
        '(SCAN_TIMEOUT_MS to change it).'
    )
  )
  console.log()

  // The service's own process handling (src/lifecycle.ts): one Ctrl-C stops it, even though the
  // terminal, npm and tsx each deliver it; a second Ctrl-C later exits at once.
  superviseProcess({
    logger,
    teardownBoundMs: config.timeouts.destroyMs + config.timeouts.killMs,
  }).supervise({
    async close() {
      console.log('\nShutting down: tearing every session down…')
      await server.close()
      console.log('Stopped cleanly. Bye.')
    },
  })

  console.log(bold('Seeded campaigns'))
  await seed(server, token)
  console.log()
  console.log(dim('Ctrl-C stops the service.'))
}

/** Seeds the campaigns through the public API, as a user would, and reports each outcome. */
async function seed(server: RunningServer, token: string): Promise<void> {
  const api = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${server.url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    if (!response.ok)
      throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`)
    return response.json() as Promise<Record<string, unknown>>
  }
  const width = Math.max(...SEEDS.map((seed) => seed.campaignId.length))

  await Promise.all(
    SEEDS.map(async (seed) => {
      const path = `/api/simulator/campaigns/${seed.campaignId}`
      await api('PUT', `${path}/behaviour`, { startup: seed.startup })
      const answer = await api('POST', `/api/campaigns/${seed.campaignId}/qr-code`)
      // Linked in an earlier run with this DATA_DIR: it came back ready, nothing to scan.
      if (seed.scan && answer.status !== 'ready') {
        await reach(server, seed.campaignId, 'awaitingScan', 'ready')
        if (server.sessions.getCampaign(seed.campaignId).status === 'awaitingScan') {
          await api('POST', `${path}/scan`)
        }
      }
      // Later sessions of these campaigns behave normally again, so "Try again" works.
      if (seed.startup !== 'qr') await api('PUT', `${path}/behaviour`, { startup: 'qr' })
      const reached = await reach(server, seed.campaignId, seed.wanted)
      const mark = reached ? '✓' : '…'
      console.log(`  ${mark} ${seed.campaignId.padEnd(width)}  ${seed.describe}`)
    })
  )
}

/** Resolves true once the campaign reaches one of `statuses` (or has been there), false after 20 s. */
function reach(
  server: RunningServer,
  campaignId: string,
  ...statuses: SessionStatus[]
): Promise<boolean> {
  return new Promise((resolve) => {
    const seen = () => {
      const view = server.sessions.getCampaign(campaignId)
      return (
        statuses.includes(view.status) ||
        view.history.some((entry) => statuses.includes(entry.status))
      )
    }
    if (seen()) return resolve(true)
    const subscription = server.sessions.subscribe({ campaignId }, () => {
      if (!seen()) return
      clearTimeout(timer)
      queueMicrotask(() => subscription?.unsubscribe())
      resolve(true)
    })
    const timer = setTimeout(() => {
      subscription?.unsubscribe()
      resolve(false)
    }, 20_000)
  })
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? error.message : error)
  process.exit(1)
})
