import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

const ANSI = new RegExp(String.fromCharCode(27) + '\\[[0-9;]*m', 'g')

describe('npm run demo', () => {
  let demo: ChildProcess | undefined

  let dataDir: string | undefined

  afterEach(() => {
    if (demo && demo.exitCode === null) demo.kill('SIGKILL')
    if (dataDir) rmSync(dataDir, { recursive: true, force: true })
    dataDir = undefined
  })

  it('serves the pages with seeded campaigns, prints URLs with a token, and stops cleanly on Ctrl-C', async () => {
    demo = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], {
      env: {
        ...process.env,
        PORT: '0',
        FORCE_COLOR: '0',
        DATA_DIR: (dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-demo-'))),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    demo.stdout!.on('data', (chunk) => (output += String(chunk)))
    demo.stderr!.on('data', (chunk) => (output += String(chunk)))
    const exited = new Promise<number | null>((resolve) => demo!.once('exit', resolve))

    const started = Date.now()
    while (!output.includes('Ctrl-C stops the service')) {
      if (demo.exitCode !== null || Date.now() - started > 30_000) {
        throw new Error(`the demo did not come up:\n${output}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const text = output.replace(ANSI, '')
    const dashboard = /Dashboard\s+(\S+)/.exec(text)?.[1] ?? ''
    const inspector = /Inspector\s+(\S+)/.exec(text)?.[1] ?? ''
    expect(dashboard).toMatch(/^http:\/\/localhost:\d+\/#token=ey/)
    expect(inspector).toMatch(/^http:\/\/localhost:\d+\/inspect#token=ey/)
    for (const campaign of ['welcome-series', 'spring-sale', 'autumn-promo', 'broken-phone']) {
      expect(text).toMatch(new RegExp(`✓ ${campaign}`))
    }

    // The fragment is the browser's: the server gets the page without it, and the API the token.
    const base = dashboard.slice(0, dashboard.indexOf('/#')).replace('localhost', '127.0.0.1')
    const token = dashboard.slice(dashboard.indexOf('#token=') + '#token='.length)
    expect((await fetch(`${base}/`)).status).toBe(200)
    expect((await fetch(`${base}/inspect`)).status).toBe(200)
    const response = await fetch(`${base}/api/campaigns`, {
      headers: { Authorization: `Bearer ${token}` },
    })
    const body = (await response.json()) as unknown
    const list = (
      Array.isArray(body) ? body : (body as { campaigns: unknown[] }).campaigns
    ) as Array<{
      campaignId: string
      status: string
    }>
    const statuses = Object.fromEntries(list.map((c) => [c.campaignId, c.status]))
    expect(statuses).toEqual({
      'welcome-series': 'ready',
      'spring-sale': 'awaitingScan',
      'autumn-promo': 'timedOut',
      'broken-phone': 'failed',
    })

    demo.kill('SIGINT')
    expect(await exited).toBe(0)
    expect(output).toContain('Stopped cleanly.')
  }, 60_000)
})
