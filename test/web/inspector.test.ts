import type { Browser, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { launchBrowser, screenshotPath, startService, type TestService } from './support/browser.ts'

describe('the inspector (/inspect) in a real browser', () => {
  let browser: Browser
  let service: TestService
  let page: Page | undefined
  let pageErrors: string[] = []

  beforeAll(async () => {
    browser = await launchBrowser()
    service = await startService({ SCAN_TIMEOUT_MS: '30000' })
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

  async function openInspector(token: string): Promise<Page> {
    page = await browser.newPage({ viewport: { width: 1440, height: 1200 } })
    page.on('pageerror', (error) => pageErrors.push(error.message))
    await page.goto(`${service.server.url}/inspect#token=${token}`)
    return page
  }

  it('shows a campaign actor going initializing → awaitingScan → ready, live', async () => {
    const admin = await service.token('root', { admin: true })
    const page = await openInspector(admin)
    await expect.poll(() => page.locator('#stream-state').textContent()).toBe('Live')
    // The supervisor is there from the start, with its statechart.
    const supervisorRow = page.locator('.actor-row', { hasText: 'supervisor' })
    await supervisorRow.waitFor({ timeout: 10_000 })
    await page.locator('#diagram[data-machine="supervisor"] svg').waitFor({ timeout: 15_000 })

    const alice = await service.token('alice')
    await service.api(alice, 'POST', '/api/campaigns/live-one/qr-code')
    const row = page.locator('.actor-row', { hasText: 'live-one' })
    await row.waitFor({ timeout: 10_000 })
    await row.click()
    await page.locator('#diagram[data-machine="campaign"] svg').waitFor({ timeout: 15_000 })
    await expect
      .poll(() => page.locator('#current-state').getAttribute('data-state'))
      .toBe('awaitingScan')
    expect(await page.locator('#diagram .is-current').count()).toBeGreaterThan(0)
    expect(await page.locator('#diagram .is-current').first().getAttribute('id')).toContain(
      'awaitingScan'
    )

    await service.api(alice, 'POST', '/api/simulator/campaigns/live-one/scan')
    // `ready` and its liveness substate (`ready.waitingForProbe`, `ready.probing`).
    await expect
      .poll(() => page.locator('#current-state').getAttribute('data-state'), { timeout: 10_000 })
      .toMatch(/^ready(\.\w+)?$/)
    // Drawn current: `ready`'s substate (Mermaid draws the compound state as a cluster).
    const current = await page
      .locator('#diagram .is-current')
      .evaluateAll((nodes) => nodes.map((node) => node.id))
    expect(current.some((id) => /-state-(ready|waitingForProbe|probing)-/.test(id))).toBe(true)

    const log = await page.locator('#log tr').allTextContents()
    const transitions = log.reverse().join('\n')
    expect(transitions).toMatch(/idle → initializing/)
    expect(transitions).toMatch(/initializing[.\w]* → awaitingScan/)
    expect(transitions).toMatch(/awaitingScan → authenticating/)
    expect(transitions).toMatch(/authenticating → ready/)
    const order = ['→ initializing', '→ awaitingScan', '→ authenticating', '→ ready'].map((step) =>
      transitions.indexOf(step)
    )
    expect(order).toEqual([...order].sort((a, b) => a - b))
    // The context summary tells whose session it is, and never shows the QR text.
    const context = await page.locator('#context').textContent()
    expect(context).toContain('live-one')
    expect(context).not.toContain(service.server.sessions.getCampaign('live-one').qr?.qr ?? '@@')

    // Filters: by status and by campaign.
    await page.getByLabel('Status').selectOption('ready')
    await expect.poll(() => page.locator('.actor-row:visible').count()).toBe(1)
    await page.getByLabel('Status').selectOption('')
    await page.getByLabel('Campaign').fill('nothing-like-this')
    await expect.poll(() => page.locator('.actor-row:visible').count()).toBe(0)
    await page.getByLabel('Campaign').fill('')

    await page.screenshot({ path: screenshotPath('inspector') })
  }, 60_000)

  it('shows at once the actors that were live before it opened', async () => {
    const admin = await service.token('root', { admin: true })
    const alice = await service.token('alice')
    await service.api(alice, 'POST', '/api/campaigns/before-a/qr-code')
    await service.api(alice, 'POST', '/api/campaigns/before-b/qr-code')
    await service.api(alice, 'POST', '/api/simulator/campaigns/before-b/scan').catch(async () => {
      // The QR may not be shown yet: wait for it, then scan.
      await new Promise((resolve) => setTimeout(resolve, 500))
      await service.api(alice, 'POST', '/api/simulator/campaigns/before-b/scan')
    })
    await expect
      .poll(() => service.server.sessions.getCampaign('before-b').status, { timeout: 10_000 })
      .toBe('ready')
    const page = await openInspector(admin)
    const rowA = page.locator('.actor-row', { hasText: 'before-a' })
    const rowB = page.locator('.actor-row', { hasText: 'before-b' })
    await rowA.waitFor({ timeout: 10_000 })
    expect(await rowA.getAttribute('data-state')).toBe('awaitingScan')
    expect(await rowB.getAttribute('data-state')).toMatch(/^ready(\.\w+)?$/)
  }, 60_000)

  it('is keyboard usable: arrows move the selection through the actor list', async () => {
    const admin = await service.token('root', { admin: true })
    const alice = await service.token('alice')
    const page = await openInspector(admin)
    await page.locator('.actor-row', { hasText: 'supervisor' }).waitFor({ timeout: 10_000 })
    for (const id of ['kb-a', 'kb-b'])
      await service.api(alice, 'POST', `/api/campaigns/${id}/qr-code`)
    await page.locator('.actor-row', { hasText: 'kb-b' }).waitFor({ timeout: 10_000 })
    await page.locator('#actors').focus()
    await page.keyboard.press('Home')
    const first = await page.locator('#detail-title').textContent()
    await page.keyboard.press('ArrowDown')
    await expect.poll(() => page.locator('#detail-title').textContent()).not.toBe(first)
    const active = await page.locator('#actors').getAttribute('aria-activedescendant')
    expect(await page.locator(`#${active}`).getAttribute('aria-selected')).toBe('true')
  }, 60_000)

  it('is one click away from the dashboard for an admin, and back', async () => {
    const admin = await service.token('root', { admin: true })
    page = await browser.newPage()
    page.on('pageerror', (error) => pageErrors.push(error.message))
    await page.goto(`${service.server.url}/#token=${admin}`)
    await page.getByRole('link', { name: 'Inspector' }).click()
    await expect.poll(() => page!.locator('#stream-state').textContent()).toBe('Live')
    expect(page.url()).toBe(`${service.server.url}/inspect`)
    await page.getByRole('link', { name: 'Dashboard' }).click()
    await page.getByLabel('Campaign id').waitFor()
    expect(await page.locator('#who').textContent()).toBe('root (admin)')
  }, 60_000)

  it('refuses a viewer without the admin role', async () => {
    const alice = await service.token('alice')
    const page = await openInspector(alice)
    await page.locator('#fatal').waitFor()
    expect(await page.locator('#fatal').textContent()).toMatch(/admins/)
    const refused = await page.evaluate(
      (url) =>
        new Promise<boolean>((resolve) => {
          const socket = new WebSocket(url)
          socket.onopen = () => resolve(false)
          socket.onerror = () => resolve(true)
        }),
      `${service.server.url.replace('http', 'ws')}/ws/inspect?token=${alice}`
    )
    expect(refused).toBe(true)
  }, 60_000)
})
