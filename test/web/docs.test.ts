/**
 * The HTTP API reference page (`/docs`) in a real browser: Swagger UI from the service's own
 * `node_modules` renders the service's OpenAPI document, and the page asks nothing of any other
 * host (it works offline).
 */
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchBrowser, startService, type TestService } from './support/browser.ts'

let browser: Browser
let service: TestService

beforeAll(async () => {
  browser = await launchBrowser()
  service = await startService()
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await service?.server.close()
})

describe('/docs', () => {
  it('shows every operation of the document and requests nothing outside the service', async () => {
    const { url } = service.server
    const document = (await (await fetch(`${url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>
    }
    const operations = Object.entries(document.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`)
    )

    const context = await browser.newContext()
    const page = await context.newPage()
    const requested: string[] = []
    const problems: string[] = []
    page.on('request', (request) => requested.push(request.url()))
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(message.text())
    })
    page.on('pageerror', (error) => problems.push(error.message))
    // Offline: anything that is not the service fails at once.
    await context.route(
      (target) => !target.href.startsWith(`${url}/`),
      (route) => route.abort('internetdisconnected')
    )

    const answer = await page.goto(`${url}/docs`)
    expect(answer?.status()).toBe(200)
    await page.locator('.opblock').first().waitFor({ timeout: 15_000 })
    const shown = await page
      .locator('.opblock-summary')
      .evaluateAll((blocks) =>
        blocks.map(
          (block) =>
            `${block.querySelector('.opblock-summary-method')?.textContent?.trim()} ${block
              .querySelector('.opblock-summary-path')
              ?.getAttribute('data-path')}`
        )
      )
    expect([...shown].sort()).toEqual([...operations].sort())
    await expect(page.locator('.info .title').textContent()).resolves.toContain('qrvisor')
    // The bearer scheme is offered.
    expect(await page.locator('button.authorize').count()).toBe(1)

    expect(requested.filter((target) => !target.startsWith(`${url}/`))).toEqual([])
    expect(requested).toContain(`${url}/openapi.json`)
    expect(problems).toEqual([])
    await context.close()
  }, 60_000)
})
