/**
 * A frontend served from its own origin (another port) calling qrvisor, in a real browser: the
 * seed's `generateQRCode` gets its QR when the origin is in `CORS_ORIGINS`, and the browser
 * blocks the calls when it is not.
 */
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Browser, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { isPngDataUrl, launchBrowser, startService, type TestService } from './support/browser.ts'

/**
 * The frontend's own server: one page with the seed's code as it is, plus what a separately
 * served app configures: the API's base URL (here from the page's fragment) in front of the
 * seed's relative `fetch` paths, and the seed's `ws://localhost:3000` pointed at the API's host.
 */
async function startFrontend(): Promise<{ origin: string; server: Server }> {
  const seedCode = readFileSync('test/web/fixtures/seed-frontend.js', 'utf8')
  const page = `<!doctype html><html><body>
    <img id="qr" alt="QR code"><p id="error"></p><p id="loading"></p>
    <script>
      const settings = new URLSearchParams(location.hash.slice(1))
      const API = new URL(settings.get('api'))
      const realFetch = window.fetch.bind(window)
      window.fetch = (url, init) => realFetch(String(url).startsWith('/') ? API.origin + url : url, init)
      const RealWebSocket = window.WebSocket
      window.WebSocket = class extends RealWebSocket {
        constructor(url, protocols) {
          super(String(url).replace('ws://localhost:3000', 'ws://' + API.host), protocols)
        }
      }
      const token = settings.get('token')
      function setLoading(loading) { document.getElementById('loading').textContent = String(loading) }
      function displayQRCode(src) { document.getElementById('qr').src = src }
      function showError(message) { document.getElementById('error').textContent = message }
    </script>
    <script>${seedCode}</script>
  </body></html>`
  const server = createServer((_request, response) => {
    response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
    response.end(page)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return { origin: `http://127.0.0.1:${port}`, server }
}

describe('a frontend on its own origin, in a real browser', () => {
  let browser: Browser
  let frontend: { origin: string; server: Server }
  let allowed: TestService
  let refused: TestService
  let page: Page | undefined

  beforeAll(async () => {
    browser = await launchBrowser()
    frontend = await startFrontend()
  }, 30_000)

  afterEach(async () => {
    await page?.close()
    page = undefined
  })

  afterAll(async () => {
    await browser?.close()
    await allowed?.server.close()
    await refused?.server.close()
    frontend?.server.close()
  }, 30_000)

  async function openFrontend(service: TestService, token: string): Promise<Page> {
    page = await browser.newPage()
    const settings = new URLSearchParams({ token, api: service.server.url })
    await page.goto(`${frontend.origin}/#${settings}`)
    return page
  }

  it('runs the seed’s generateQRCode against qrvisor when the origin is allowed', async () => {
    allowed = await startService({ CORS_ORIGINS: frontend.origin })
    const token = await allowed.token('frank')
    const page = await openFrontend(allowed, token)
    expect(new URL(page.url()).origin).not.toBe(new URL(allowed.server.url).origin)
    await page.evaluate("generateQRCode('cross-origin')")
    await page.waitForFunction(
      () => (document.getElementById('qr') as HTMLImageElement).src.startsWith('data:'),
      undefined,
      { timeout: 10_000 }
    )
    expect(isPngDataUrl((await page.locator('#qr').getAttribute('src')) ?? '')).toBe(true)
    expect(await page.locator('#error').textContent()).toBe('')
  }, 60_000)

  it('is blocked by the browser when the origin is not allowed, and nothing starts', async () => {
    refused = await startService({ CORS_ORIGINS: 'https://someone-else.example' })
    const token = await refused.token('grace')
    const page = await openFrontend(refused, token)
    const consoleErrors: string[] = []
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text())
    })
    await page.evaluate("generateQRCode('cross-origin')")
    await expect
      .poll(() => consoleErrors.join('\n'), { timeout: 10_000 })
      .toMatch(/blocked by CORS policy/)
    await page.locator('#loading').filter({ hasText: 'false' }).waitFor({ timeout: 10_000 })
    expect(await page.locator('#qr').getAttribute('src')).toBeNull()
    expect(refused.server.sessions.getCampaign('cross-origin').sessionId).toBeNull()
    // Its WebSocket is refused too (403) before any subscription.
    const wsStatus = await page.evaluate(
      (url) =>
        new Promise<string>((resolve) => {
          const ws = new WebSocket(url)
          ws.onopen = () => resolve('open')
          ws.onerror = () => resolve('refused')
        }),
      `${refused.server.url.replace('http', 'ws')}/ws/campaigns`
    )
    expect(wsStatus).toBe('refused')
  }, 60_000)
})
