/**
 * The dashboard as a new user meets it (issue 9), on a laptop (1280×800) and on a phone
 * (390×844): the layout fits the screen, the sign-in page says how to get a token, the link panel
 * follows its campaign and says why a session failed, and the campaign list tells the truth
 * about activity and history.
 */
import type { Browser, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { launchBrowser, startService, type TestService } from './support/browser.ts'

const VIEWPORTS = [
  { name: 'laptop', width: 1280, height: 800 },
  { name: 'phone', width: 390, height: 844 },
] as const

describe.each(VIEWPORTS)('the dashboard at $width×$height ($name)', (viewport) => {
  let browser: Browser
  let service: TestService
  let page: Page | undefined
  let pageErrors: string[] = []
  let sockets: string[] = []

  beforeAll(async () => {
    browser = await launchBrowser()
    service = await startService({ SCAN_TIMEOUT_MS: '60000', INIT_TIMEOUT_MS: '1500' })
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

  async function open(path: string): Promise<Page> {
    page = await browser.newPage({ viewport: { width: viewport.width, height: viewport.height } })
    sockets = []
    page.on('websocket', (socket) => sockets.push(socket.url()))
    page.on('pageerror', (error) => pageErrors.push(error.message))
    await page.goto(`${service.server.url}${path}`)
    return page
  }

  /** The page is no wider than the screen: nothing to scroll sideways to. */
  async function expectNoHorizontalOverflow(page: Page): Promise<void> {
    const widths = await page.evaluate(() => ({
      page: document.documentElement.scrollWidth,
      body: document.body.scrollWidth,
      header: document.querySelector('header.top')!.getBoundingClientRect().width,
    }))
    expect(widths).toEqual({ page: viewport.width, body: viewport.width, header: viewport.width })
  }

  /** Entirely on the first screen, without scrolling. */
  async function expectOnScreen(page: Page, selector: string): Promise<void> {
    const box = await page.locator(selector).boundingBox()
    expect(box, selector).not.toBeNull()
    expect(box!.x, selector).toBeGreaterThanOrEqual(0)
    expect(box!.y, selector).toBeGreaterThanOrEqual(0)
    expect(box!.x + box!.width, selector).toBeLessThanOrEqual(viewport.width)
    expect(box!.y + box!.height, selector).toBeLessThanOrEqual(viewport.height)
  }

  async function linkFromPanel(page: Page, campaignId: string): Promise<void> {
    await page.getByLabel('Campaign id').fill(campaignId)
    await page.getByRole('button', { name: 'Show QR code' }).click()
  }

  it('fits the screen: the QR, its countdown, “Start over” and “Unlink WhatsApp” are on it', async () => {
    const token = await service.token(`fit-${viewport.name}`)
    await service.api(token, 'PUT', '/api/simulator/campaigns/fit-failed/behaviour', {
      startup: 'error',
    })
    await service.api(token, 'POST', '/api/campaigns/fit-failed/qr-code')
    const page = await open(`/#token=${token}`)
    await page.locator('tr[data-campaign="fit-failed"]').waitFor()
    await linkFromPanel(page, 'fit-campaign')
    await page.locator('#qr-image').waitFor({ timeout: 10_000 })
    await expect.poll(() => page.locator('#countdown').textContent()).toMatch(/^\d+:\d\d$/)
    await expectOnScreen(page, '#qr-image')
    await expectOnScreen(page, '#countdown')
    await expectOnScreen(page, '#restart-button')
    await expectNoHorizontalOverflow(page)
    // Every campaign's cells stay inside the screen too (on a phone the table becomes cards).
    const rightmost = await page.evaluate(() =>
      Math.max(
        ...Array.from(document.querySelectorAll('#campaign-rows td, #campaign-rows th')).map(
          (cell) => cell.getBoundingClientRect().right
        )
      )
    )
    expect(rightmost).toBeLessThanOrEqual(viewport.width)

    // Once linked, “Unlink WhatsApp” and its confirmation fit too, buttons within reach (issue 11).
    await page.getByRole('button', { name: 'Scan the QR' }).click()
    await page.locator('#outcome[data-kind="linked"]').waitFor({ timeout: 10_000 })
    await expectOnScreen(page, '#unlink-button')
    await page.getByRole('button', { name: 'Unlink WhatsApp' }).click()
    await page.getByRole('dialog', { name: 'Unlink WhatsApp from fit-campaign?' }).waitFor()
    await expectOnScreen(page, '#unlink-dialog')
    await expectOnScreen(page, '#unlink-dialog button[value="unlink"]')
    await expectNoHorizontalOverflow(page)
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click()
    await page.locator('#unlink-dialog').waitFor({ state: 'hidden' })
  }, 60_000)

  it('says how to get a token, and opens no WebSocket for a token the service refuses', async () => {
    const page = await open('/#token=not-a-token')
    await page.locator('#sign-in-error').waitFor()
    const signIn = await page.locator('#sign-in').textContent()
    expect(signIn).toContain('npm run -s token -- --sub')
    expect(signIn).toContain('npm run demo')
    // Nobody is signed in: no "?" and no "Forget token".
    expect(await page.locator('#who').textContent()).toBe('')
    expect(await page.locator('#sign-out').isVisible()).toBe(false)
    await page.waitForTimeout(1_500)
    expect(sockets).toEqual([])
    await expectNoHorizontalOverflow(page)

    // A good token opens one WebSocket, once.
    const token = await service.token(`signed-${viewport.name}`)
    await page.getByLabel('Access token (JWT)').fill(token)
    await page.getByRole('button', { name: 'Use this token' }).click()
    await expect.poll(() => page.locator('#live-state').textContent()).toBe('Live updates on.')
    await page.waitForTimeout(500)
    expect(sockets).toHaveLength(1)
    expect(await page.locator('#who').textContent()).toBe(`signed-${viewport.name}`)
  }, 60_000)

  it('shows when each campaign was last active, not when the page loaded', async () => {
    const token = await service.token(`active-${viewport.name}`)
    const campaignId = `active-${viewport.name}`
    await service.api(token, 'POST', `/api/campaigns/${campaignId}/qr-code`)
    await expect
      .poll(
        async () =>
          (await service.api(token, 'GET', `/api/campaigns/${campaignId}/connection`)).status
      )
      .toBe('awaitingScan')
    const { lastActivity } = await service.api(
      token,
      'GET',
      `/api/campaigns/${campaignId}/connection`
    )
    // Long enough that the time the page loads shows as another second.
    await new Promise((resolve) => setTimeout(resolve, 2_100))
    const page = await open(`/#token=${token}`)
    const cell = page.locator(`tr[data-campaign="${campaignId}"] td[data-label="Last activity"]`)
    await expect.poll(() => page.locator('#live-state').textContent()).toBe('Live updates on.')
    await page.waitForTimeout(500)
    const expected = await page.evaluate(
      (at) =>
        new Date(at).toLocaleTimeString([], {
          hour: '2-digit',
          minute: '2-digit',
          second: '2-digit',
          hourCycle: 'h23',
        }),
      String(lastActivity)
    )
    expect(await cell.textContent()).toBe(expected)
  }, 60_000)

  it('catches up with a step it missed before its live updates began', async () => {
    const token = await service.token(`catch-up-${viewport.name}`)
    const campaignId = `catch-up-${viewport.name}`
    await service.api(token, 'POST', `/api/campaigns/${campaignId}/qr-code`)
    await expect
      .poll(
        async () =>
          (await service.api(token, 'GET', `/api/campaigns/${campaignId}/connection`)).status
      )
      .toBe('awaitingScan')
    // The page's WebSocket reaches the service only once the phone has scanned.
    let release: () => void = () => {}
    const held: Array<string | Buffer> = []
    page = await browser.newPage({ viewport: { width: viewport.width, height: viewport.height } })
    page.on('pageerror', (error) => pageErrors.push(error.message))
    await page.routeWebSocket(/\/ws\/campaigns/, (socket) => {
      let server: ReturnType<typeof socket.connectToServer> | null = null
      socket.onMessage((message) => (server ? server.send(message) : held.push(message)))
      release = () => {
        server = socket.connectToServer()
        server.onMessage((message) => socket.send(message))
        for (const message of held.splice(0)) server.send(message)
      }
    })
    await page.goto(`${service.server.url}/#token=${token}`)
    const row = page.locator(`tr[data-campaign="${campaignId}"]`)
    await expect.poll(() => row.locator('.badge').textContent()).toBe('Waiting for the scan')
    await service.api(token, 'POST', `/api/simulator/campaigns/${campaignId}/scan`)
    await expect
      .poll(
        async () =>
          (await service.api(token, 'GET', `/api/campaigns/${campaignId}/connection`)).status
      )
      .toBe('ready')
    release()
    // Well before the list's next refresh (15 s).
    await expect.poll(() => row.locator('.badge').textContent(), { timeout: 5_000 }).toBe('Linked')
    await row.locator('summary').click()
    expect(await row.locator('details li').allTextContents()).toHaveLength(4)
  }, 60_000)

  it('lists every step of a session started from the panel, the first one too', async () => {
    const token = await service.token(`history-${viewport.name}`)
    const campaignId = `history-${viewport.name}`
    const page = await open(`/#token=${token}`)
    await linkFromPanel(page, campaignId)
    await page.locator('#qr-image').waitFor({ timeout: 10_000 })
    const row = page.locator(`tr[data-campaign="${campaignId}"]`)
    await expect.poll(() => row.locator('.badge').textContent()).toBe('Waiting for the scan')
    const { history } = (await service.api(
      token,
      'GET',
      `/api/campaigns/${campaignId}/connection`
    )) as { history: unknown[] }
    expect(history).toHaveLength(2)
    await expect.poll(() => row.locator('summary').textContent()).toBe('2 changes')
    await row.locator('summary').click()
    expect(await row.locator('details li').first().textContent()).toContain('Starting WhatsApp…')
  }, 60_000)

  it('follows the campaign when the service restarts its crashed linked session', async () => {
    const token = await service.token(`restart-${viewport.name}`)
    const campaignId = `restart-${viewport.name}`
    const page = await open(`/#token=${token}`)
    await linkFromPanel(page, campaignId)
    await page.locator('#qr-image').waitFor({ timeout: 10_000 })
    await page.getByRole('button', { name: 'Scan the QR' }).click()
    await page.locator('#outcome[data-kind="linked"]').waitFor({ timeout: 10_000 })
    const first = await service.api(token, 'GET', `/api/campaigns/${campaignId}/connection`)

    await service.api(token, 'POST', `/api/simulator/campaigns/${campaignId}/crash`)
    // The supervisor restarts it with the saved login (after about 1 s of backoff).
    await expect
      .poll(
        async () => {
          const now = await service.api(token, 'GET', `/api/campaigns/${campaignId}/connection`)
          return now.status === 'ready' && now.sessionId !== first.sessionId
        },
        { timeout: 15_000 }
      )
      .toBe(true)
    await page.locator('#outcome[data-kind="linked"]').waitFor({ timeout: 10_000 })
    expect(await page.locator('#outcome-title').textContent()).toBe('Linked')
    expect(await page.locator('#link-status').textContent()).toBe('Linked')
    expect(await page.locator('#qr-box').textContent()).toBe('Linked ✓')
    const row = page.locator(`tr[data-campaign="${campaignId}"]`)
    await expect.poll(() => row.locator('.badge').textContent()).toBe('Linked')
  }, 60_000)

  it('re-links a linked campaign with “Start over”', async () => {
    const token = await service.token(`relink-${viewport.name}`)
    const campaignId = `relink-${viewport.name}`
    const page = await open(`/#token=${token}`)
    await linkFromPanel(page, campaignId)
    await page.locator('#qr-image').waitFor({ timeout: 10_000 })
    await page.getByRole('button', { name: 'Scan the QR' }).click()
    await page.locator('#outcome[data-kind="linked"]').waitFor({ timeout: 10_000 })
    const linked = await service.api(token, 'GET', `/api/campaigns/${campaignId}/connection`)

    const restart = page.getByRole('button', { name: 'Start over' })
    expect(await restart.isVisible()).toBe(true)
    await restart.click()
    await expect
      .poll(
        async () =>
          (await service.api(token, 'GET', `/api/campaigns/${campaignId}/connection`)).sessionId
      )
      .not.toBe(linked.sessionId)
    // The simulated phone's login is saved: the new session comes back linked, and so does the panel.
    await page.locator('#outcome[data-kind="linked"]').waitFor({ timeout: 10_000 })
  }, 60_000)

  it('says why linking failed, and what the QR box shows is the outcome', async () => {
    const token = await service.token(`why-${viewport.name}`)
    await service.api(token, 'PUT', `/api/simulator/campaigns/why-${viewport.name}/behaviour`, {
      startup: 'error',
    })
    await service.api(token, 'PUT', `/api/simulator/campaigns/slow-${viewport.name}/behaviour`, {
      startup: 'hang',
    })
    const page = await open(`/#token=${token}`)
    await linkFromPanel(page, `why-${viewport.name}`)
    await page.locator('#outcome[data-kind="failed"]').waitFor({ timeout: 10_000 })
    expect(await page.locator('#outcome-detail').textContent()).toBe('simulated start failure')
    expect(await page.locator('#qr-box').textContent()).toBe('Linking failed: no QR code to scan.')
    const row = page.locator(`tr[data-campaign="why-${viewport.name}"]`)
    await expect
      .poll(() => row.locator('.failure-detail').textContent())
      .toBe('simulated start failure')
    await expectOnScreen(page, '#outcome')

    // WhatsApp never shows a QR: the init deadline (1.5 s here) ends it.
    await linkFromPanel(page, `slow-${viewport.name}`)
    await page.locator('#outcome[data-kind="timedOut"]').waitFor({ timeout: 10_000 })
    expect(await page.locator('#qr-box').textContent()).toBe('Timed out: no QR code to scan.')
    await expectNoHorizontalOverflow(page)
  }, 60_000)
})

describe.each(VIEWPORTS)('/inspect with INSPECT off, at $width×$height', (viewport) => {
  let browser: Browser
  let service: TestService

  beforeAll(async () => {
    browser = await launchBrowser()
    service = await startService({ INSPECT: 'false' })
  }, 30_000)

  afterAll(async () => {
    await browser?.close()
    await service?.server.close()
  }, 30_000)

  it('answers a page that says how to turn the inspector on', async () => {
    const page = await browser.newPage({
      viewport: { width: viewport.width, height: viewport.height },
    })
    try {
      const response = await page.goto(`${service.server.url}/inspect`)
      expect(response?.status()).toBe(404)
      await expect
        .poll(() => page.getByRole('heading', { name: 'The inspector is off' }).isVisible())
        .toBe(true)
      expect(await page.locator('main').textContent()).toContain('INSPECT=true')
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBe(viewport.width)
      await page.getByRole('link', { name: 'Dashboard' }).click()
      await page.locator('#sign-in').waitFor()
    } finally {
      await page.close()
    }
  }, 30_000)
})
