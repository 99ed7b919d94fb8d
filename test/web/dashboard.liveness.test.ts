/**
 * The dashboard shows when a linked campaign's WhatsApp was last seen alive (issue 15), in a
 * real browser.
 */
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchBrowser, startService, type TestService } from './support/browser.ts'

describe('the dashboard: last seen alive', () => {
  let browser: Browser
  let service: TestService

  beforeAll(async () => {
    browser = await launchBrowser()
    service = await startService({ LIVENESS_INTERVAL_MS: '1000', LIVENESS_TIMEOUT_MS: '500' })
  }, 30_000)

  afterAll(async () => {
    await browser?.close()
    await service?.server.close()
  }, 30_000)

  it('shows "last seen alive" with the time the service reports for a ready campaign', async () => {
    const token = await service.token('alice')
    await service.api(token, 'PUT', '/api/simulator/campaigns/welcome-series/behaviour', {
      startup: 'restored',
    })
    await service.api(token, 'POST', '/api/campaigns/welcome-series/qr-code')
    await expect
      .poll(
        async () =>
          (await service.api(token, 'GET', '/api/campaigns/welcome-series/connection')).status
      )
      .toBe('ready')
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } })
    const errors: string[] = []
    page.on('pageerror', (error) => errors.push(error.message))
    try {
      await page.goto(`${service.server.url}/#token=${token}`)
      const cell = page.locator(
        'tr[data-campaign="welcome-series"] td[data-label="Last activity"] .hint'
      )
      await expect.poll(() => cell.textContent()).toMatch(/^last seen alive \d\d:\d\d:\d\d$/)
      const { lastSeenAlive } = await service.api(
        token,
        'GET',
        '/api/campaigns/welcome-series/connection'
      )
      expect(lastSeenAlive).toEqual(expect.any(String))
      expect(errors).toEqual([])
    } finally {
      await page.close()
    }
  }, 60_000)
})
