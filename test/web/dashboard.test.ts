import { readFileSync } from 'node:fs'
import { Hono } from 'hono'
import type { Browser, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  isPngDataUrl,
  launchBrowser,
  screenshotPath,
  startService,
  type TestService,
} from './support/browser.ts'

describe('the dashboard (/) in a real browser', () => {
  let browser: Browser
  let service: TestService
  let page: Page | undefined
  let pageErrors: string[] = []

  beforeAll(async () => {
    browser = await launchBrowser()
    service = await startService({ SCAN_TIMEOUT_MS: '30000' }, [seedFrontendPage()])
  }, 30_000)

  afterEach(async () => {
    await page?.close()
    page = undefined
    const errors = pageErrors
    pageErrors = []
    expect(errors).toEqual([])
  })

  afterAll(async () => {
    await browser?.close()
    await service?.server.close()
  }, 30_000)

  async function openDashboard(token: string): Promise<Page> {
    page = await browser.newPage({ viewport: { width: 1200, height: 900 } })
    page.on('pageerror', (error) => pageErrors.push(error.message))
    await page.goto(`${service.server.url}/#token=${token}`)
    return page
  }

  it('links a campaign: a real PNG QR, a running countdown, the scan, then “Linked”', async () => {
    const token = await service.token('alice')
    // Two campaigns of alice's already have a story: one linked, one whose engine failed.
    await service.api(token, 'PUT', '/api/simulator/campaigns/welcome-series/behaviour', {
      startup: 'restored',
    })
    await service.api(token, 'POST', '/api/campaigns/welcome-series/qr-code')
    await service.api(token, 'PUT', '/api/simulator/campaigns/autumn-promo/behaviour', {
      startup: 'error',
    })
    await service.api(token, 'POST', '/api/campaigns/autumn-promo/qr-code')
    const page = await openDashboard(token)
    // The token leaves the address bar once read.
    expect(page.url()).not.toContain('token=')

    await page.getByLabel('Campaign id').fill('spring-sale')
    await page.getByRole('button', { name: 'Show QR code' }).click()

    const qr = page.locator('#qr-image')
    await qr.waitFor({ state: 'visible', timeout: 10_000 })
    const src = await qr.getAttribute('src')
    expect(isPngDataUrl(src ?? '')).toBe(true)
    expect(await qr.evaluate((image: HTMLImageElement) => image.naturalWidth)).toBeGreaterThan(100)
    await expect.poll(() => page.locator('#countdown').textContent()).toMatch(/^0:[0-3]\d$/)
    await expect.poll(() => page.locator('#link-status').textContent()).toBe('Waiting for the scan')
    await expect
      .poll(() => page.locator('tr[data-campaign="spring-sale"] .badge').textContent())
      .toBe('Waiting for the scan')
    await expect
      .poll(() => page.locator('tr[data-campaign="welcome-series"] .badge').textContent())
      .toBe('Linked')
    await page.screenshot({ path: screenshotPath('dashboard'), fullPage: true })

    await page.getByRole('button', { name: 'Scan the QR' }).click()
    await page.locator('#outcome[data-kind="linked"]').waitFor({ timeout: 10_000 })
    expect(await page.locator('#outcome-title').textContent()).toBe('Linked')
    expect(await page.locator('#link-status').textContent()).toBe('Linked')
    await expect
      .poll(() => page.locator('tr[data-campaign="spring-sale"] .badge').textContent())
      .toBe('Linked')
    await page.screenshot({ path: screenshotPath('dashboard-linked'), fullPage: true })
  }, 60_000)

  // Issue 14: linking with a phone number instead of a camera.
  it('links with a phone number instead: the code large, its countdown, the steps, then “Linked”', async () => {
    const token = await service.token('hana')
    const page = await openDashboard(token)
    await page.getByLabel('Campaign id').fill('hana-shop')
    await page.getByRole('button', { name: 'Show QR code' }).click()
    await page.locator('#qr-image').waitFor({ timeout: 10_000 })
    const byQr = (await service.api(token, 'GET', '/api/campaigns/hana-shop/connection')).sessionId

    await page.getByRole('button', { name: 'Link with phone number instead' }).click()
    const phone = page.getByLabel('Phone number')
    await phone.fill('+44 7911 123456')
    await page.getByRole('button', { name: 'Get a pairing code' }).click()
    // The browser refuses the number before any request: international digits only.
    expect(await phone.evaluate((input: HTMLInputElement) => input.validity.valid)).toBe(false)
    await phone.fill('447911123456')
    await page.getByRole('button', { name: 'Get a pairing code' }).click()

    const code = page.locator('#pairing-code')
    await code.waitFor({ state: 'visible', timeout: 10_000 })
    const connection = await service.api(token, 'GET', '/api/campaigns/hana-shop/connection')
    expect(connection.sessionId).not.toBe(byQr)
    const shown = (connection.pairingCode as { code: string }).code
    expect(await code.textContent()).toBe(`${shown.slice(0, 4)}-${shown.slice(4)}`)
    expect(await code.evaluate((el) => parseFloat(getComputedStyle(el).fontSize))).toBeGreaterThan(
      30
    )
    expect(await page.locator('#qr-image').count()).toBe(0)
    await expect.poll(() => page.locator('#countdown').textContent()).toMatch(/^0:[0-3]\d$/)
    expect(await page.locator('#countdown-text').textContent()).toBe('left to type the code')
    expect(await page.locator('#pairing-steps').isVisible()).toBe(true)
    expect(await page.locator('#scan-steps').isVisible()).toBe(false)
    expect(await page.locator('#pairing-steps').textContent()).toContain(
      'Link with phone number instead'
    )
    expect(await page.getByRole('button', { name: 'Scan the QR' }).isDisabled()).toBe(true)
    await page.screenshot({ path: screenshotPath('dashboard-pairing-code'), fullPage: true })

    await page.getByRole('button', { name: 'Type the code' }).click()
    await page.locator('#outcome[data-kind="linked"]').waitFor({ timeout: 10_000 })
    expect(await page.locator('#link-status').textContent()).toBe('Linked')
  }, 60_000)

  // Issue 14: a proxy per campaign, set from the panel; only its address is ever shown.
  it('sets the campaign’s proxy from the panel, showing its address only', async () => {
    const token = await service.token('ivan')
    const page = await openDashboard(token)
    await page.getByLabel('Campaign id').fill('ivan-shop')
    await page.getByRole('button', { name: 'Show QR code' }).click()
    await page.locator('#qr-image').waitFor({ timeout: 10_000 })
    await expect
      .poll(() => page.locator('#proxy-current').textContent())
      .toBe('No proxy of its own (the service default applies, if any).')

    await page.getByLabel('Proxy').fill('socks5://ivan:hunter2@proxy.example:1080')
    await page.getByRole('button', { name: 'Save proxy' }).click()
    await expect
      .poll(() => page.locator('#proxy-current').textContent())
      .toMatch(/not saved.*SOCKS5/)

    await page.getByLabel('Proxy').fill('http://ivan:hunter2@proxy.example:3128')
    await page.getByRole('button', { name: 'Save proxy' }).click()
    await expect
      .poll(() => page.locator('#proxy-current').textContent())
      .toMatch(/^Through http:\/\/proxy\.example:3128 \(with credentials\)\. Saved/)
    expect(await page.getByLabel('Proxy').inputValue()).toBe('')
    expect(await page.content()).not.toContain('hunter2')
    const settings = await service.api(token, 'GET', '/api/campaigns/ivan-shop/settings')
    expect(settings.proxy).toEqual({ server: 'http://proxy.example:3128', hasCredentials: true })

    await page.getByRole('button', { name: 'Remove proxy' }).click()
    await expect.poll(() => page.locator('#proxy-current').textContent()).toMatch(/^No proxy/)
  }, 60_000)

  it('says so when the phone logs a linked campaign out', async () => {
    const token = await service.token('frank')
    const page = await openDashboard(token)
    await page.getByLabel('Campaign id').fill('frank-shop')
    await page.getByRole('button', { name: 'Show QR code' }).click()
    await page.locator('#qr-image').waitFor({ timeout: 10_000 })
    await page.getByRole('button', { name: 'Scan the QR' }).click()
    await page.locator('#outcome[data-kind="linked"]').waitFor({ timeout: 10_000 })
    await page.getByRole('button', { name: 'Log out from the phone' }).click()
    await page.locator('#outcome[data-kind="failed"]').waitFor({ timeout: 10_000 })
    expect(await page.locator('#outcome-title').textContent()).toBe('Logged out from the phone')
    expect(await page.getByRole('button', { name: 'Try again' }).isVisible()).toBe(true)
  }, 60_000)

  // Issue 11: "Unlink WhatsApp" logs the phone out and deletes the login, after a confirmation.
  it('unlinks a linked campaign once confirmed in a dialog; “Link again” needs a new scan', async () => {
    const token = await service.token('gina')
    const connection = () => service.api(token, 'GET', '/api/campaigns/gina-shop/connection')
    const page = await openDashboard(token)
    const logoutRequests: string[] = []
    page.on('request', (request) => {
      if (request.url().endsWith('/logout')) logoutRequests.push(request.url())
    })
    await page.getByLabel('Campaign id').fill('gina-shop')
    await page.getByRole('button', { name: 'Show QR code' }).click()
    await page.locator('#qr-image').waitFor({ timeout: 10_000 })
    const unlink = page.getByRole('button', { name: 'Unlink WhatsApp' })
    // Nothing is linked while the first QR waits for its scan: nothing to unlink.
    await expect.poll(() => page.locator('#link-status').textContent()).toBe('Waiting for the scan')
    expect(await unlink.isVisible()).toBe(false)
    await page.getByRole('button', { name: 'Scan the QR' }).click()
    await page.locator('#outcome[data-kind="linked"]').waitFor({ timeout: 10_000 })
    const linked = await connection()
    expect(linked.status).toBe('ready')

    const dialog = page.getByRole('dialog', { name: 'Unlink WhatsApp from gina-shop?' })
    await unlink.click()
    await dialog.waitFor()
    const said = await dialog.textContent()
    expect(said).toContain('WhatsApp logs this device out')
    expect(said).toContain('saved login is deleted')
    expect(said).toContain('a new QR code')
    expect(said).toContain('The campaign stays yours.')
    // The safe answer has the focus: Enter cancels; so does Escape. Both give the focus back.
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Cancel')
    await page.keyboard.press('Enter')
    await dialog.waitFor({ state: 'hidden' })
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('unlink-button')
    await page.keyboard.press('Enter')
    await dialog.waitFor()
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'hidden' })
    expect(await page.locator('#outcome').getAttribute('data-kind')).toBe('linked')

    await unlink.click()
    await dialog.getByRole('button', { name: 'Unlink', exact: true }).click()
    await page.locator('#outcome[data-kind="unlinked"]').waitFor({ timeout: 10_000 })
    // One request: the one confirmed; the two cancelled sent none.
    expect(logoutRequests).toHaveLength(1)
    expect(await page.locator('#outcome-title').textContent()).toBe('Unlinked')
    expect(await page.locator('#qr-box').textContent()).toBe('Unlinked: no phone is linked.')
    expect(await unlink.isVisible()).toBe(false)
    const unlinked = await connection()
    expect(unlinked).toMatchObject({
      sessionId: linked.sessionId,
      status: 'cleaned',
      reason: 'unlinked',
      hasActiveSession: false,
    })
    const row = page.locator('tr[data-campaign="gina-shop"]')
    await expect.poll(() => row.locator('.badge').textContent()).toBe('Ended')
    expect(await row.locator('.hint.reason').textContent()).toContain('unlinked')
    await page.screenshot({ path: screenshotPath('dashboard-unlinked'), fullPage: true })

    // The focus is on “Link again”: the login is gone, so the new session shows a QR to scan.
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Link again')
    await page.keyboard.press('Enter')
    await page.locator('#qr-image').waitFor({ timeout: 10_000 })
    await expect.poll(() => page.locator('#link-status').textContent()).toBe('Waiting for the scan')
    const again = await connection()
    expect(again.sessionId).not.toBe(linked.sessionId)
    expect(again.status).toBe('awaitingScan')
  }, 60_000)

  it('shows an unlink made elsewhere (another tab, the API) in the panel', async () => {
    const token = await service.token('ivan')
    const page = await openDashboard(token)
    await page.getByLabel('Campaign id').fill('ivan-shop')
    await page.getByRole('button', { name: 'Show QR code' }).click()
    await page.locator('#qr-image').waitFor({ timeout: 10_000 })
    await page.getByRole('button', { name: 'Scan the QR' }).click()
    await page.locator('#outcome[data-kind="linked"]').waitFor({ timeout: 10_000 })

    await service.api(token, 'POST', '/api/campaigns/ivan-shop/logout')
    await page.locator('#outcome[data-kind="unlinked"]').waitFor({ timeout: 10_000 })
    expect(await page.locator('#outcome-title').textContent()).toBe('Unlinked')
    expect(await page.getByRole('button', { name: 'Link again' }).isVisible()).toBe(true)
    expect(await page.getByRole('button', { name: 'Unlink WhatsApp' }).isVisible()).toBe(false)
  }, 60_000)

  it('says why an unlink failed, and the campaign stays linked', async () => {
    const token = await service.token('hank')
    const page = await openDashboard(token)
    await page.getByLabel('Campaign id').fill('hank-shop')
    await page.getByRole('button', { name: 'Show QR code' }).click()
    await page.locator('#qr-image').waitFor({ timeout: 10_000 })
    await page.getByRole('button', { name: 'Scan the QR' }).click()
    await page.locator('#outcome[data-kind="linked"]').waitFor({ timeout: 10_000 })
    // The service refuses, as it does while it shuts down.
    await page.route('**/api/campaigns/hank-shop/logout', (route) =>
      route.fulfill({
        status: 503,
        contentType: 'application/json',
        body: JSON.stringify({
          error: { code: 'shutting_down', message: 'The service is shutting down.' },
        }),
      })
    )
    await page.getByRole('button', { name: 'Unlink WhatsApp' }).click()
    await page.getByRole('dialog').getByRole('button', { name: 'Unlink', exact: true }).click()
    const error = page.locator('#unlink-error')
    await error.waitFor()
    expect(await error.textContent()).toBe(
      'Could not unlink WhatsApp: The service is shutting down.'
    )
    expect(await error.getAttribute('role')).toBe('alert')
    expect(await page.locator('#outcome').getAttribute('data-kind')).toBe('linked')
    expect(await page.getByRole('button', { name: 'Unlink WhatsApp' }).isEnabled()).toBe(true)
    const now = await service.api(token, 'GET', '/api/campaigns/hank-shop/connection')
    expect(now.status).toBe('ready')
  }, 60_000)

  it('shows a session that failed, with its reason and the way to retry', async () => {
    const token = await service.token('bob')
    await service.api(token, 'PUT', '/api/simulator/campaigns/broken/behaviour', {
      startup: 'error',
    })
    const page = await openDashboard(token)
    await page.getByLabel('Campaign id').fill('broken')
    await page.getByRole('button', { name: 'Show QR code' }).click()
    await page.locator('#outcome[data-kind="failed"]').waitFor({ timeout: 10_000 })
    expect(await page.locator('#outcome-title').textContent()).toBe('Linking failed')
    expect(await page.locator('#outcome-text').textContent()).not.toBe('')
    expect(await page.getByRole('button', { name: 'Try again' }).isVisible()).toBe(true)
  }, 60_000)

  it('lists the user’s campaigns live, and cleans one up', async () => {
    const token = await service.token('carol')
    await service.api(token, 'POST', '/api/campaigns/carol-news/qr-code')
    const page = await openDashboard(token)
    const row = page.locator('tr[data-campaign="carol-news"]')
    await expect.poll(() => row.locator('.badge').textContent()).toBe('Waiting for the scan')
    // Another user's campaigns are not listed.
    expect(await page.locator('tr[data-campaign="spring-sale"]').count()).toBe(0)

    await service.api(token, 'POST', '/api/simulator/campaigns/carol-news/scan')
    await expect.poll(() => row.locator('.badge').textContent()).toBe('Linked')

    await row.getByRole('button', { name: 'Clean up carol-news' }).click()
    await expect.poll(() => row.locator('.badge').textContent()).toBe('Ended')
    await row.locator('summary').click()
    const history = await row.locator('details ol').textContent()
    expect(history).toContain('Linked')
    expect(history).toContain('Ended')
  }, 60_000)

  // Issue 12: in a cluster the list says which node runs each session; outside one, nothing.
  it('shows the node that runs a campaign’s session, and follows a session of another node live', async () => {
    const token = await service.token('dave')
    await service.api(token, 'POST', '/api/campaigns/dave-local/qr-code')
    const remote = (status: 'initializing' | 'awaitingScan') => ({
      node: 'node-a',
      owner: 'dave',
      event: {
        type: 'status' as const,
        campaignId: 'dave-remote',
        sessionId: 'remote-session-1',
        at: Date.now(),
        status,
        reason: null,
        isConnected: false,
        hasActiveSession: true,
        node: 'node-a',
      },
      expiresAt: Date.now() + 30_000,
      lastSeenAlive: null,
    })
    service.server.sessions.applyRemote(remote('initializing'))
    const page = await openDashboard(token)
    const remoteRow = page.locator('tr[data-campaign="dave-remote"]')
    await expect.poll(() => remoteRow.locator('.node').textContent()).toBe('on node-a')
    expect(await remoteRow.locator('.badge').textContent()).toBe('Starting WhatsApp…')
    const localRow = page.locator('tr[data-campaign="dave-local"]')
    await localRow.waitFor()
    expect(await localRow.locator('.node').count()).toBe(0)

    service.server.sessions.applyRemote(remote('awaitingScan'))
    await expect.poll(() => remoteRow.locator('.badge').textContent()).toBe('Waiting for the scan')
    await service.api(token, 'POST', '/api/campaigns/dave-local/cleanup-session')
  }, 60_000)

  it('lists every campaign of the user, following the pages of the list', async () => {
    const token = await service.token('erin')
    const ids = Array.from({ length: 1_001 }, (_, i) => `erin-${String(i).padStart(4, '0')}`)
    for (const id of ids) await service.api(token, 'POST', `/api/campaigns/${id}/qr-code`)
    const page = await openDashboard(token)
    // More than one page (1,000 at most): the last campaign comes from the second page.
    await page.locator('tr[data-campaign="erin-1000"]').waitFor({ timeout: 20_000 })
    expect(await page.locator('tr[data-campaign^="erin-"]').count()).toBe(1_001)
    await Promise.all(
      ids.map((id) => service.api(token, 'POST', `/api/campaigns/${id}/cleanup-session`))
    )
  }, 60_000)

  it('runs the seed’s frontend code, unchanged, and shows the QR from the server', async () => {
    const token = await service.token('dave')
    page = await browser.newPage()
    page.on('pageerror', (error) => pageErrors.push(error.message))
    await page.goto(`${service.server.url}/test/seed-frontend.html#token=${token}`)
    await page.evaluate("generateQRCode('seed-campaign')")
    await page.waitForFunction(
      () => (document.getElementById('qr') as HTMLImageElement).src.startsWith('data:'),
      undefined,
      { timeout: 10_000 }
    )
    const src = await page.locator('#qr').getAttribute('src')
    expect(isPngDataUrl(src ?? '')).toBe(true)
    expect(await page.locator('#loading').textContent()).toBe('false')
    expect(await page.locator('#error').textContent()).toBe('')
  }, 60_000)
})

/**
 * A page of the seed's app: the seed's frontend code as it is, plus what it expects its app to
 * provide (`token`, `setLoading`, `displayQRCode`, `showError`). It is served by the service
 * itself, from the same origin, as the seed's app would be. The seed's code connects to
 * ws://localhost:3000; the test service listens on another port, so the page's WebSocket
 * constructor is pointed at it. Nothing else of the seed's code is touched.
 */
function seedFrontendPage(): Hono {
  const seedCode = readFileSync('test/web/fixtures/seed-frontend.js', 'utf8')
  const routes = new Hono()
  routes.get('/test/seed-frontend.html', (c) => {
    const port = new URL(c.req.url).port
    return c.html(`<!doctype html><html><body>
      <img id="qr" alt="QR code"><p id="error"></p><p id="loading"></p>
      <script>
        const RealWebSocket = window.WebSocket
        window.WebSocket = class extends RealWebSocket {
          constructor(url, protocols) {
            super(String(url).replace('ws://localhost:3000', 'ws://' + location.hostname + ':${port}'), protocols)
          }
        }
        const token = new URLSearchParams(location.hash.slice(1)).get('token')
        function setLoading(loading) { document.getElementById('loading').textContent = String(loading) }
        function displayQRCode(src) { document.getElementById('qr').src = src }
        function showError(message) { document.getElementById('error').textContent = message }
      </script>
      <script>${seedCode}</script>
    </body></html>`)
  })
  return routes
}

describe('the dashboard when a QR expires', () => {
  let browser: Browser
  let service: TestService

  beforeAll(async () => {
    browser = await launchBrowser()
    service = await startService({ SCAN_TIMEOUT_MS: '3000' })
  }, 30_000)

  afterAll(async () => {
    await browser?.close()
    await service?.server.close()
  }, 30_000)

  it('counts down to zero, shows the timeout, and “Try again” brings a new QR', async () => {
    const token = await service.token('erin')
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } })
    try {
      await page.goto(`${service.server.url}/#token=${token}`)
      await page.getByLabel('Campaign id').fill('slow-phone')
      await page.getByRole('button', { name: 'Show QR code' }).click()
      await page.locator('#qr-image').waitFor({ timeout: 10_000 })
      const firstSession = await page
        .locator('tr[data-campaign="slow-phone"] td.mono')
        .getAttribute('title')

      const remaining = () =>
        page.locator('#countdown').getAttribute('data-remaining-ms').then(Number)
      // The countdown runs to the scan deadline (3 s), not to the init deadline it showed before.
      await expect.poll(remaining, { timeout: 2_000 }).toBeLessThanOrEqual(3_000)
      const early = await remaining()
      expect(early).toBeGreaterThan(0)
      await expect.poll(remaining, { timeout: 5_000 }).toBeLessThan(early)

      await page.locator('#outcome[data-kind="timedOut"]').waitFor({ timeout: 10_000 })
      expect(await page.locator('#countdown').textContent()).toBe('0:00')
      expect(await page.locator('#outcome-title').textContent()).toBe('Timed out')
      expect(await page.locator('#outcome-text').textContent()).toMatch(/not scanned/)
      const retry = page.getByRole('button', { name: 'Try again' })
      expect(await retry.isVisible()).toBe(true)
      await page.screenshot({ path: screenshotPath('dashboard-timed-out'), fullPage: true })

      await retry.click()
      await page.locator('#outcome').waitFor({ state: 'hidden', timeout: 5_000 })
      await page.locator('#qr-image').waitFor({ timeout: 10_000 })
      await expect
        .poll(() => page.locator('tr[data-campaign="slow-phone"] td.mono').getAttribute('title'))
        .not.toBe(firstSession)
    } finally {
      await page.close()
    }
  }, 60_000)
})
