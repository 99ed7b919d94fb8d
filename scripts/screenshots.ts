/**
 * The README's screenshots (`docs/screenshots/*.png`), taken with playwright-core on Debian's
 * Chromium against the real service: `npx tsx scripts/screenshots.ts`.
 *
 * The service runs the simulated engine, with one campaign whose engine fails as the wwebjs
 * engine does on a machine without DNS (its real detail), so the dashboard shows a failure with
 * its hint.
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { chromium, type Page } from 'playwright-core'
import { loadConfig } from '../src/config.ts'
import type { Engine } from '../src/engines/engine.ts'
import { createSimulatedEngine } from '../src/engines/simulated.ts'
import { silentLogger } from '../src/logger.ts'
import { startServer } from '../src/server.ts'

const OUT = 'docs/screenshots'
const CHROMIUM = process.env.CHROME_PATH || '/usr/bin/chromium'
/** What the wwebjs engine reports when the machine cannot resolve web.whatsapp.com. */
const OFFLINE_DETAIL =
  'initialize() failed: net::ERR_NAME_NOT_RESOLVED at https://web.whatsapp.com/'

const secret = randomBytes(32).toString('base64url')
/** A store and saved logins of its own: an earlier run's campaigns must not be restored. */
const dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-screenshots-'))
const simulated = createSimulatedEngine()
simulated.setBehaviour('welcome-series', { startup: 'restored' })
simulated.setBehaviour('autumn-promo', { startup: 'hang' })
const engine: Engine = {
  name: 'simulated',
  createSession(options) {
    if (options.campaignId !== 'offline-promo') return simulated.createSession(options)
    let timer: NodeJS.Timeout | undefined
    return {
      start() {
        timer = setTimeout(
          () =>
            options.onEvent({ type: 'terminated', kind: 'start_failed', detail: OFFLINE_DETAIL }),
          300
        )
      },
      stop: async () => {
        clearTimeout(timer)
        return { forced: false, durationMs: 1 }
      },
      probe: async () => ({ state: 'CONNECTED' }),
    }
  },
  close: () => simulated.close(),
}

const server = await startServer(
  loadConfig({
    WA_ENGINE: 'simulated',
    JWT_SECRET: secret,
    INSPECT: 'true',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    DATA_DIR: dataDir,
    INIT_TIMEOUT_MS: '1500',
    SCAN_TIMEOUT_MS: '90000',
  }),
  { logger: silentLogger, engine }
)
const token = await new SignJWT({ roles: ['admin'] })
  .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
  .setSubject('demo-admin')
  .setIssuedAt()
  .setExpirationTime('10m')
  .sign(new TextEncoder().encode(secret))

async function request(method: string, path: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}` },
  })
  return (await response.json()) as Record<string, unknown>
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let tries = 0; tries < 100; tries++) {
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`never: ${what}`)
}

const statusOf = async (campaignId: string) =>
  (await request('GET', `/api/campaigns/${campaignId}/connection`)).status

for (const campaignId of ['welcome-series', 'autumn-promo', 'offline-promo', 'spring-sale']) {
  await request('POST', `/api/campaigns/${campaignId}/qr-code`)
}
await until(async () => (await statusOf('welcome-series')) === 'ready', 'welcome-series linked')
await until(async () => (await statusOf('autumn-promo')) === 'timedOut', 'autumn-promo timed out')
await until(async () => (await statusOf('offline-promo')) === 'failed', 'offline-promo failed')
await until(async () => (await statusOf('spring-sale')) === 'awaitingScan', 'spring-sale QR')

mkdirSync(OUT, { recursive: true })
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
try {
  async function dashboard(width: number, height: number, file: string, fullPage: boolean) {
    const page = await browser.newPage({ viewport: { width, height } })
    await page.goto(`${server.url}/#token=${token}`)
    await page.getByLabel('Campaign id').fill('spring-sale')
    await page.getByRole('button', { name: 'Show QR code' }).click()
    await page.locator('#qr-image').waitFor()
    await page.locator('tr[data-campaign="offline-promo"] .failure-detail').waitFor()
    await settle(page)
    await page.screenshot({ path: `${OUT}/${file}`, fullPage })
    await page.close()
  }
  await dashboard(1280, 800, 'dashboard.png', true)
  await dashboard(390, 844, 'dashboard-phone.png', false)

  // The confirmation before unlinking a linked campaign (cancelled: nothing is unlinked).
  const unlinking = await browser.newPage({ viewport: { width: 1280, height: 800 } })
  await unlinking.goto(`${server.url}/#token=${token}`)
  await unlinking.getByLabel('Campaign id').fill('welcome-series')
  await unlinking.getByRole('button', { name: 'Show QR code' }).click()
  await unlinking.locator('#outcome[data-kind="linked"]').waitFor()
  await unlinking.getByRole('button', { name: 'Unlink WhatsApp' }).click()
  await unlinking.getByRole('dialog').waitFor()
  await settle(unlinking)
  await unlinking.screenshot({ path: `${OUT}/dashboard-unlink.png` })
  await unlinking.keyboard.press('Escape')
  await unlinking.close()

  // A session that starts while the inspector is open, so its whole story is in the log.
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } })
  await page.goto(`${server.url}/inspect#token=${token}`)
  await page.locator('.actor-row', { hasText: 'supervisor' }).waitFor()
  await request('POST', '/api/campaigns/summer-sale/qr-code')
  await page.locator('.actor-row', { hasText: 'summer-sale' }).click()
  await page.locator('#diagram[data-machine="campaign"] svg').waitFor()
  await page.locator('#current-state[data-state="awaitingScan"]').waitFor()
  await settle(page)
  await page.screenshot({ path: `${OUT}/inspector.png` })
  await page.close()
} finally {
  await browser.close()
  await server.close()
  rmSync(dataDir, { recursive: true, force: true })
}
console.log(`Screenshots written to ${OUT}/`)

/** Lets the page finish its animations (the countdown bar, smooth scrolls). */
async function settle(page: Page): Promise<void> {
  await page.waitForTimeout(800)
}
