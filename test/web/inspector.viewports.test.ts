/**
 * The inspector as an operator meets it (issue 9), on a laptop (1280×800) and on a phone
 * (390×844): only real actors are listed, Mermaid leaves nothing behind, sessions are found by how
 * they ended, the supervisor's log tells what it just did, and the campaign statechart can be read.
 */
import type { Browser, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { launchBrowser, startService, type TestService } from './support/browser.ts'

const VIEWPORTS = [
  { name: 'laptop', width: 1280, height: 800 },
  { name: 'phone', width: 390, height: 844 },
] as const

describe.each(VIEWPORTS)('the inspector at $width×$height ($name)', (viewport) => {
  let browser: Browser
  let service: TestService
  let page: Page | undefined
  let pageErrors: string[] = []

  beforeAll(async () => {
    browser = await launchBrowser()
    service = await startService({ SCAN_TIMEOUT_MS: '60000', INIT_TIMEOUT_MS: '1000' })
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

  async function openInspector(): Promise<Page> {
    const admin = await service.token('root', { admin: true })
    page = await browser.newPage({ viewport: { width: viewport.width, height: viewport.height } })
    page.on('pageerror', (error) => pageErrors.push(error.message))
    await page.goto(`${service.server.url}/inspect#token=${admin}`)
    await expect.poll(() => page!.locator('#stream-state').textContent()).toBe('Live')
    return page
  }

  const row = (page: Page, label: string) => page.locator('.actor-row', { hasText: label })

  it('lists no internal actor when a session ends, and leaves no Mermaid error on the page', async () => {
    const alice = await service.token('alice')
    const campaignId = `ends-${viewport.name}`
    const page = await openInspector()
    await service.api(alice, 'POST', `/api/campaigns/${campaignId}/qr-code`)
    await row(page, campaignId).waitFor({ timeout: 10_000 })
    await service.api(alice, 'POST', `/api/campaigns/${campaignId}/cleanup-session`)
    await expect.poll(() => row(page, campaignId).getAttribute('class')).toContain('ended')
    await page.waitForTimeout(300)
    const labels = await page.locator('.actor-row:visible .name').allTextContents()
    expect(labels).not.toContain('shard')
    expect(labels.filter((label) => label !== 'supervisor' && label.startsWith('ends-'))).toEqual([
      campaignId,
    ])
    for (const label of labels) {
      await row(page, label).first().click()
      await expect.poll(() => page.locator('#diagram svg').count(), { timeout: 15_000 }).toBe(1)
    }
    // Every drawing the clicks started has finished (Mermaid's scratch element goes with it).
    await page.locator('#diagram:not([data-drawing])').waitFor({ timeout: 15_000 })
    expect(await page.locator('#diagram .banner.bad').count()).toBe(0)
    // Mermaid draws "Syntax error" into the page on a failed render; nothing of the kind is left.
    expect(await page.locator('body').textContent()).not.toContain('Syntax error')
    expect(await page.locator('body > div[id^="d"], body > svg[id^="statechart"]').count()).toBe(0)
  }, 60_000)

  it('says so in its pane when a statechart cannot be drawn, and leaves nothing else behind', async () => {
    const admin = await service.token('root', { admin: true })
    page = await browser.newPage({ viewport: { width: viewport.width, height: viewport.height } })
    page.on('pageerror', (error) => pageErrors.push(error.message))
    // The service's own stream, plus one actor whose machine's diagram Mermaid cannot parse.
    await page.routeWebSocket(/\/ws\/inspect/, (socket) => {
      const server = socket.connectToServer()
      server.onMessage((message) => {
        socket.send(message)
        if (typeof message === 'string' && message.startsWith('{"type":"hello"')) {
          socket.send(
            JSON.stringify({
              type: 'machine',
              machineId: 'broken',
              mermaid: 'stateDiagram-v2\n  [*] --> ??? -->',
            })
          )
          const actor = {
            id: 'x1',
            machineId: 'broken',
            parentId: null,
            systemId: null,
            label: 'broken-machine',
            campaignId: null,
            state: 'somewhere',
            status: 'active',
            context: {},
            updatedAt: Date.now(),
          }
          socket.send(
            JSON.stringify({ type: 'batch', records: [{ k: 'actor', actor }], dropped: 0 })
          )
        }
      })
    })
    await page.goto(`${service.server.url}/inspect#token=${admin}`)
    await row(page, 'broken-machine').click()
    await expect
      .poll(() => page!.locator('#diagram .banner.bad').textContent(), { timeout: 15_000 })
      .toMatch(/^The statechart could not be drawn/)
    await page.waitForTimeout(300)
    expect(await page.locator('body').textContent()).not.toContain('Syntax error')
    expect(await page.locator('body > *:not(a, header, #fatal, #inspector, script)').count()).toBe(
      0
    )
  }, 60_000)

  it('finds sessions by how they ended: timed out, failed, cleaned up', async () => {
    const alice = await service.token('alice')
    const timedOut = `late-${viewport.name}`
    const failed = `broken-${viewport.name}`
    await service.api(alice, 'PUT', `/api/simulator/campaigns/${timedOut}/behaviour`, {
      startup: 'hang',
    })
    await service.api(alice, 'PUT', `/api/simulator/campaigns/${failed}/behaviour`, {
      startup: 'error',
    })
    const page = await openInspector()
    const filter = page.getByLabel('Status')
    const options = await filter.locator('option').allTextContents()
    expect(options).toContain('Timed out (init, scan or auth deadline)')
    expect(await filter.locator('option[value="timedOut"]').count()).toBe(0)

    await service.api(alice, 'POST', `/api/campaigns/${timedOut}/qr-code`)
    await service.api(alice, 'POST', `/api/campaigns/${failed}/qr-code`)
    await expect
      .poll(() => row(page, timedOut).getAttribute('class'), { timeout: 10_000 })
      .toContain('ended')
    await expect.poll(() => row(page, failed).getAttribute('class')).toContain('ended')

    const shown = () => page.locator('.actor-row:visible .name').allTextContents()
    // The list is redrawn after the choice: wait for the filtered list, not for the first one.
    const onlyOneOf = async (wanted: string, unwanted: string) => {
      const names = await shown()
      return names.includes(wanted) && !names.includes(unwanted)
    }
    await filter.selectOption('ended:timeout')
    await expect.poll(() => onlyOneOf(timedOut, failed)).toBe(true)
    await filter.selectOption('ended:failure')
    await expect.poll(() => onlyOneOf(failed, timedOut)).toBe(true)
    await filter.selectOption('ended')
    await expect.poll(shown).toEqual(expect.arrayContaining([failed, timedOut]))
    expect(await shown()).not.toContain('supervisor')
  }, 60_000)

  it('shows the supervisor’s recent events as soon as it opens, each with its campaign', async () => {
    const alice = await service.token('alice')
    const campaignId = `earlier-${viewport.name}`
    await service.api(alice, 'POST', `/api/campaigns/${campaignId}/qr-code`)
    await service.api(alice, 'POST', `/api/campaigns/${campaignId}/cleanup-session`)
    const page = await openInspector()
    // The supervisor is selected when the page opens.
    await expect.poll(() => page.locator('#detail-title').textContent()).toBe('supervisor')
    const log = page.locator('#log tr')
    await expect.poll(() => log.count()).toBeGreaterThan(0)
    const events = (await log.allTextContents()).join('\n')
    expect(events).toContain(`SESSION.REQUESTED ${campaignId}`)
    expect(events).toContain(`CLEANUP.REQUESTED ${campaignId}`)
    expect(events).toContain(`SESSION.ENDED ${campaignId}`)
  }, 60_000)

  it('draws the campaign statechart at a readable size, to zoom and move around', async () => {
    const alice = await service.token('alice')
    const campaignId = `chart-${viewport.name}`
    await service.api(alice, 'POST', `/api/campaigns/${campaignId}/qr-code`)
    const page = await openInspector()
    await row(page, campaignId).click()
    const diagram = page.locator('#diagram')
    await page.locator('#diagram[data-machine="campaign"] svg').waitFor({ timeout: 15_000 })
    // A drawing started before the click (the actor selected first) has finished too.
    await page.locator('#diagram:not([data-drawing])').waitFor({ timeout: 15_000 })
    await expect
      .poll(() => page.locator('#current-state').getAttribute('data-state'))
      .toBe('awaitingScan')

    // The selected actor's pane has room (on a phone it comes below the list, full width).
    const detail = await page.locator('#detail').boundingBox()
    expect(detail!.width).toBeGreaterThan(viewport.width * 0.6)
    // No horizontal overflow once the drawing is laid out (Mermaid measures it in the page first).
    await expect
      .poll(() => page.evaluate(() => document.documentElement.scrollWidth))
      .toBe(viewport.width)
    await expect
      .poll(async () => {
        const box = await diagram.boundingBox()
        return box && box.y >= 0 && box.y < viewport.height
      })
      .toBe(true)

    /** The size a state's 16 px label is drawn at, on screen. */
    const labelPx = () =>
      page.evaluate(() => {
        const svg = document.querySelector('#diagram svg') as SVGSVGElement
        const label = svg.querySelector('g.node .nodeLabel, g.node text') as Element
        const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width
        return parseFloat(getComputedStyle(label).fontSize) * scale
      })
    expect(await labelPx()).toBeGreaterThanOrEqual(11)

    // The current state is in view.
    const current = await page.locator('#diagram g.is-current').last().boundingBox()
    const pane = await diagram.boundingBox()
    expect(current!.x).toBeGreaterThanOrEqual(pane!.x)
    expect(current!.x + current!.width).toBeLessThanOrEqual(pane!.x + pane!.width)

    // Zoom in and out.
    const before = await labelPx()
    await page.getByRole('button', { name: 'Zoom in' }).click()
    expect(await labelPx()).toBeGreaterThan(before)
    await page.getByRole('button', { name: 'Zoom out' }).click()
    expect(await labelPx()).toBeCloseTo(before, 1)

    // Drag to move the drawing.
    const scroll = () =>
      diagram.evaluate((element) => ({ left: element.scrollLeft, top: element.scrollTop }))
    const start = await scroll()
    const x = pane!.x + pane!.width / 2
    const y = pane!.y + pane!.height / 2
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(x - 80, y - 60, { steps: 5 })
    await page.mouse.up()
    const moved = await scroll()
    expect(moved.left - start.left + (moved.top - start.top)).toBeGreaterThan(40)

    // "Fit" shows the whole machine in the pane.
    await page.getByRole('button', { name: 'Fit' }).click()
    const fitted = await page.locator('#diagram svg').boundingBox()
    expect(fitted!.width).toBeLessThanOrEqual(pane!.width)
    expect(fitted!.height).toBeLessThanOrEqual(pane!.height)
  }, 60_000)
})
