/**
 * The seed report's frontend code (`generateQRCode`, `connectWebSocket`), copied verbatim into
 * test/fixtures/seed-frontend.txt, runs unchanged against the server. A harness plays the browser:
 * Node's `fetch` resolving the page-relative URLs, `ws`'s WebSocket for the hard-coded
 * `ws://localhost:3000` (pointed at the test server's port), and the page's own helpers
 * (`setLoading`, `displayQRCode`, `showError`, `token`) as spies.
 */
import { readFileSync } from 'node:fs'
import vm from 'node:vm'
import { WebSocket } from 'ws'
import { afterEach, describe, expect, it } from 'vitest'
import {
  api,
  closeAll,
  eventually,
  startTestServer,
  tokenFor,
  type TestServer,
} from '../support/edge.ts'

const SEED_FRONTEND = readFileSync(
  new URL('../fixtures/seed-frontend.txt', import.meta.url),
  'utf8'
)

const browserSockets: WebSocket[] = []

afterEach(async () => {
  for (const socket of browserSockets.splice(0)) socket.terminate()
  await closeAll()
})

interface Page {
  generateQRCode(campaignId: string): Promise<void>
  displayed: string[]
  errors: string[]
  loading: boolean[]
}

/** Loads the seed's code into a fresh "page" whose globals talk to `server`. */
function openPage(server: TestServer, token: string): Page {
  const page = { displayed: [] as string[], errors: [] as string[], loading: [] as boolean[] }
  const origin = new URL(server.url)
  class BrowserWebSocket extends WebSocket {
    constructor(address: string) {
      const url = new URL(address)
      url.hostname = origin.hostname
      url.port = origin.port
      super(url)
      browserSockets.push(this)
    }
  }
  const context = vm.createContext({
    fetch: (input: string, init?: RequestInit) => fetch(new URL(input, server.url), init),
    WebSocket: BrowserWebSocket,
    JSON,
    setTimeout,
    clearTimeout,
    console: { log: () => {}, error: () => {} },
    token,
    setLoading: (value: boolean) => page.loading.push(value),
    displayQRCode: (qrCode: string) => page.displayed.push(qrCode),
    showError: (message: string) => page.errors.push(message),
  })
  vm.runInContext(SEED_FRONTEND, context, { filename: 'seed-frontend.js' })
  return {
    ...page,
    generateQRCode: (campaignId) => context.generateQRCode(campaignId) as Promise<void>,
  }
}

describe('the seed frontend, unchanged', () => {
  it('shows a QR code', async () => {
    const server = await startTestServer()
    const page = openPage(server, await tokenFor('alice'))
    await page.generateQRCode('spring-sale')
    await eventually(() => page.displayed.length > 0)
    expect(page.displayed[0]).toMatch(/^data:image\/png;base64,/)
    expect(page.loading).toEqual([true, false])
    expect(page.errors).toEqual([])
  })

  it('shows the same session again when the same campaign is requested repeatedly', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const first = openPage(server, token)
    await first.generateQRCode('spring-sale')
    await eventually(() => first.displayed.length > 0)
    const { sessionId } = server.sessions.getCampaign('spring-sale')

    const second = openPage(server, token)
    await second.generateQRCode('spring-sale')
    await eventually(() => second.displayed.length > 0)
    expect(second.displayed[0]).toBe(first.displayed[0])
    expect(server.sessions.getCampaign('spring-sale').sessionId).toBe(sessionId)
    expect(server.simulator.counters().started).toBe(1)
  })

  it('shows the error when the QR code is not scanned in time', async () => {
    const server = await startTestServer({ SCAN_TIMEOUT_MS: '300' })
    const page = openPage(server, await tokenFor('alice'))
    await page.generateQRCode('spring-sale')
    await eventually(() => page.errors.length > 0)
    expect(page.errors[0]).toMatch(/not scanned/)
  })

  it('works with the curl commands of the seed (with a token)', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const qr = await api(server, 'POST', '/api/campaigns/CAMPAIGN_ID/qr-code', { token })
    expect(qr.status).toBe(202)
    const connection = await api(server, 'GET', '/api/campaigns/CAMPAIGN_ID/connection', { token })
    expect(connection.json).toMatchObject({
      isConnected: false,
      hasActiveSession: true,
      sessionId: qr.json.sessionId,
    })
    const cleanup = await api(server, 'POST', '/api/campaigns/CAMPAIGN_ID/cleanup-session', {
      token,
    })
    expect(cleanup.json).toMatchObject({
      message: 'Session cleaned up successfully',
      campaignId: 'CAMPAIGN_ID',
    })
  })
})
