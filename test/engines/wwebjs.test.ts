/**
 * The wwebjs engine against a real Chromium, offline: a missing network, a stand-in for
 * web.whatsapp.com that never becomes WhatsApp, a browser frozen or killed from outside, and many
 * sessions in a row. Every test ends by proving that no process of its sessions is left.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { Engine, EngineSession } from '../../src/engines/engine.ts'
import { createWwebjsEngine, type WwebjsEngineOptions } from '../../src/engines/wwebjs/index.ts'
import { parseProxy, type ProxySettings } from '../../src/proxy.ts'
import { startConnectProxy } from './connectProxy.ts'
import {
  chromiumForTests,
  eventually,
  environ,
  EventLog,
  killEverythingUnder,
  makeDataDir,
  markedBrowser,
  NO_NETWORK_ARGS,
  processesOf,
  profileLocks,
  startStandIn,
  within,
  type StandIn,
} from './support.ts'

const DESTROY_TIMEOUT_MS = 2_000
const KILL_TIMEOUT_MS = 2_000
/** Polling and scheduling slack on a busy 2-core machine. */
const SLACK_MS = 1_000

const chromePath = chromiumForTests()
const dataDir = makeDataDir()
let stall: StandIn
let blank: StandIn
let whatsapp: StandIn
const engines: Engine[] = []
let sessionCounter = 0

function engineWith(args: string[], extra: Partial<WwebjsEngineOptions> = {}): Engine {
  const engine = createWwebjsEngine({
    dataDir,
    chromePath,
    destroyTimeoutMs: DESTROY_TIMEOUT_MS,
    killTimeoutMs: KILL_TIMEOUT_MS,
    extraChromiumArgs: args,
    ...extra,
  })
  engines.push(engine)
  return engine
}

function newSession(
  engine: Engine,
  campaignId = `campaign-${++sessionCounter}`,
  pairWithPhoneNumber?: string,
  proxy?: ProxySettings
) {
  const sessionId = `session-${++sessionCounter}-${Date.now()}`
  const log = new EventLog()
  const session: EngineSession = engine.createSession({
    campaignId,
    sessionId,
    onEvent: log.onEvent,
    ...(pairWithPhoneNumber !== undefined ? { pairWithPhoneNumber } : {}),
    ...(proxy !== undefined ? { proxy } : {}),
  })
  return { session, sessionId, campaignId, log }
}

/** The proof every test ends with: nothing of the session runs, no profile is locked. */
function expectNothingLeft(sessionId: string, knownGroups: number[] = []): void {
  expect(processesOf(sessionId, dataDir, knownGroups)).toEqual([])
  expect(profileLocks(dataDir)).toEqual([])
}

/** Waits until the session's browser asks the stand-in for the page; returns its process group. */
async function browserLoading(standIn: StandIn, sessionId: string): Promise<number> {
  const requested = standIn.nextPageRequest()
  const ok = await eventually(() => markedBrowser(sessionId) !== undefined, 15_000)
  expect(ok, 'the marked browser process appears').toBe(true)
  await within(requested, 15_000, 'the page request to the stand-in')
  const browser = markedBrowser(sessionId)
  expect(browser).toBeDefined()
  return browser!.pgid
}

const unhandled: unknown[] = []
const onUnhandled = (reason: unknown) => unhandled.push(reason)

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled)
  stall = await startStandIn('stall')
  blank = await startStandIn('blank')
  whatsapp = await startStandIn('whatsapp')
})

afterEach(async () => {
  // Stop every session a test left live, then kill anything of this file that still runs.
  await Promise.all(engines.splice(0).map((engine) => engine.close()))
  killEverythingUnder(dataDir)
  expect(unhandled, 'no unhandled rejection escaped').toEqual([])
})

afterAll(async () => {
  process.off('unhandledRejection', onUnhandled)
  killEverythingUnder(dataDir)
  rmSync(dataDir, { recursive: true, force: true })
  await stall?.close()
  await blank?.close()
  await whatsapp?.close()
})

describe('wwebjs engine with a real Chromium', () => {
  it('fails fast with start_failed when there is no network, and leaves nothing behind', async () => {
    const { session, sessionId, log } = newSession(engineWith(NO_NETWORK_ARGS))
    const startedAt = Date.now()
    session.start()
    const terminated = await within(log.next('terminated'), 10_000, 'terminated')
    expect(terminated.kind).toBe('start_failed')
    expect(terminated.detail).toContain('ERR_NAME_NOT_RESOLVED')
    expect(Date.now() - startedAt).toBeLessThan(10_000)
    expect(log.types()).toEqual(['terminated'])

    const result = await session.stop()
    expect(result.durationMs).toBeLessThan(DESTROY_TIMEOUT_MS + KILL_TIMEOUT_MS + SLACK_MS)
    expectNothingLeft(sessionId)
  })

  it('keeps a session on a page that never becomes WhatsApp live, without a QR, until stopped', async () => {
    const { session, sessionId, log } = newSession(engineWith(blank.chromiumArgs))
    session.start()
    const group = await browserLoading(blank, sessionId)
    // Give whatsapp-web.js time to look for WhatsApp's code and not find it.
    await new Promise((resolve) => setTimeout(resolve, 2_000))
    expect(log.events).toEqual([])
    expect(markedBrowser(sessionId)).toBeDefined()

    const result = await session.stop()
    expect(result.forced).toBe(false)
    expect(result.durationMs).toBeLessThan(DESTROY_TIMEOUT_MS + KILL_TIMEOUT_MS + SLACK_MS)
    expectNothingLeft(sessionId, [group])
    expect(log.events).toEqual([])
  })

  // Issue 8: Chromium started with the service's whole environment, so JWT_SECRET was readable in
  // /proc/<pid>/environ of every browser process.
  it("starts Chromium without the service's configuration in its environment", async () => {
    const configuration = {
      JWT_SECRET: 'a-secret-that-must-never-reach-a-browser-0123456789',
      JWT_ISSUER: 'https://issuer.example',
      DATA_DIR: dataDir,
      WA_ENGINE: 'wwebjs',
      PORT: '3000',
      QRVISOR_UNRELATED_SETTING: 'also-private',
    }
    const saved = { ...process.env }
    Object.assign(process.env, configuration, { LANG: 'C.UTF-8', TZ: 'Europe/Lisbon' })
    try {
      const { session, sessionId } = newSession(engineWith(blank.chromiumArgs))
      session.start()
      const group = await browserLoading(blank, sessionId)
      const processes = processesOf(sessionId, dataDir, [group])
      const environments = processes.map((record) => environ(record.pid)).filter(Boolean)
      expect(environments.length).toBeGreaterThan(0)
      for (const environment of environments) {
        const names = environment.split('\0').map((entry) => entry.split('=', 1)[0])
        for (const name of Object.keys(configuration)) expect(names).not.toContain(name)
        expect(environment).not.toContain(configuration.JWT_SECRET)
      }
      // What Chromium needs still reaches the browser itself, with the session's marks.
      const browser = environ(markedBrowser(sessionId)!.pid)
      for (const needed of ['PATH=', 'LANG=C.UTF-8', 'TZ=Europe/Lisbon']) {
        expect(browser.split('\0').some((entry) => entry.startsWith(needed))).toBe(true)
      }
      expect(browser).toContain(`QRVISOR_SESSION=${sessionId}\0`)
      await session.stop()
      expectNothingLeft(sessionId, [group])
    } finally {
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name]
      Object.assign(process.env, saved)
    }
  })

  it('ends a start whose page never finishes loading (initialize() never settles)', async () => {
    const { session, sessionId, log } = newSession(engineWith(stall.chromiumArgs))
    session.start()
    const group = await browserLoading(stall, sessionId)

    const result = await session.stop()
    expect(result.durationMs).toBeLessThan(DESTROY_TIMEOUT_MS + KILL_TIMEOUT_MS + SLACK_MS)
    expectNothingLeft(sessionId, [group])
    expect(log.events).toEqual([])
  })

  it('reports start_failed when initialize() rejects with the string "auth timeout"', async () => {
    const engine = engineWith(blank.chromiumArgs, { whatsappLoadTimeoutMs: 1_000 })
    const { session, sessionId, log } = newSession(engine)
    session.start()
    const group = await browserLoading(blank, sessionId)
    const terminated = await within(log.next('terminated'), 10_000, 'terminated')
    expect(terminated).toEqual({
      type: 'terminated',
      kind: 'start_failed',
      detail: expect.stringContaining('auth timeout'),
    })

    await session.stop()
    expectNothingLeft(sessionId, [group])
  })

  it('stops a session before its browser was even spawned', async () => {
    const { session, sessionId, log } = newSession(engineWith(stall.chromiumArgs))
    session.start()
    const stopping = session.stop()
    // Idempotent: every call returns the same promise.
    expect(session.stop()).toBe(stopping)
    const result = await stopping
    expect(result.durationMs).toBeLessThan(KILL_TIMEOUT_MS + SLACK_MS)
    // Nothing may appear later either: the launch was cancelled, not left running.
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    expectNothingLeft(sessionId)
    expect(log.events).toEqual([])
  })

  it('stops a session while Chromium is still launching, and kills it', async () => {
    const { session, sessionId, log } = newSession(engineWith(stall.chromiumArgs))
    session.start()
    // The browser process exists, but puppeteer has not handed it to whatsapp-web.js yet.
    const spawned = await eventually(() => markedBrowser(sessionId) !== undefined, 15_000, 2)
    expect(spawned).toBe(true)
    const group = markedBrowser(sessionId)!.pgid

    const result = await session.stop()
    // forced: the launch was aborted (destroy() would have done nothing, wwebjs #3052).
    expect(result.forced, 'stopped through the launch abort').toBe(true)
    expect(result.durationMs).toBeLessThan(DESTROY_TIMEOUT_MS + KILL_TIMEOUT_MS + SLACK_MS)
    expectNothingLeft(sessionId, [group])
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    expectNothingLeft(sessionId, [group])
    expect(log.events).toEqual([])
  })

  it('kills a Chromium frozen (SIGSTOP) when teardown starts within destroy + kill timeouts', async () => {
    const { session, sessionId, log } = newSession(engineWith(stall.chromiumArgs))
    session.start()
    const group = await browserLoading(stall, sessionId)
    process.kill(-group, 'SIGSTOP')

    const requestedAt = Date.now()
    const result = await session.stop()
    const elapsed = Date.now() - requestedAt
    expect(result.forced).toBe(true)
    expect(elapsed).toBeGreaterThanOrEqual(DESTROY_TIMEOUT_MS - 50)
    expect(elapsed).toBeLessThan(DESTROY_TIMEOUT_MS + KILL_TIMEOUT_MS + SLACK_MS)
    expectNothingLeft(sessionId, [group])
    expect(log.events).toEqual([])
  })

  it('reports crashed at once when Chromium is killed from outside while the session waits', async () => {
    const { session, sessionId, log } = newSession(engineWith(stall.chromiumArgs))
    session.start()
    const group = await browserLoading(stall, sessionId)

    const killedAt = Date.now()
    process.kill(-group, 'SIGKILL')
    const terminated = await within(log.next('terminated'), 2_000, 'the crashed event')
    expect(terminated.kind).toBe('crashed')
    // Issue 9: the detail says how it died, so a person can tell the OOM killer's work.
    expect(terminated.detail).toContain('(killed by SIGKILL)')
    expect(Date.now() - killedAt).toBeLessThan(1_000)
    expect(log.types()).toEqual(['terminated'])

    await session.stop()
    expectNothingLeft(sessionId, [group])
  })

  it("reports crashed when the page's renderer dies while the browser lives on", async () => {
    const { session, sessionId, log } = newSession(engineWith(whatsapp.chromiumArgs))
    session.start()
    await within(log.next('qr'), 15_000, 'the first qr')
    const group = markedBrowser(sessionId)!.pgid

    const renderers = processesOf(sessionId, dataDir, [group]).filter((record) =>
      record.cmdline.includes('--type=renderer')
    )
    expect(renderers.length).toBeGreaterThan(0)
    for (const renderer of renderers) process.kill(renderer.pid, 'SIGKILL')
    const terminated = await within(log.next('terminated'), 2_000, 'the crashed event')
    expect(terminated.kind).toBe('crashed')
    expect(terminated.detail).toContain('page crashed')

    await session.stop()
    expectNothingLeft(sessionId, [group])
  })

  it('keeps the campaign profile across sessions, and waits for the previous browser to be gone', async () => {
    const engine = engineWith(stall.chromiumArgs)
    const first = newSession(engine, 'kept-campaign')
    first.session.start()
    const firstGroup = await browserLoading(stall, first.sessionId)
    const profileDir = join(dataDir, 'wwebjs', 'session-kept-campaign')
    writeFileSync(join(profileDir, 'saved-by-first-session'), 'auth')
    // A frozen browser makes the first teardown slow: the second session must not race it for
    // the profile ("The browser is already running").
    process.kill(-firstGroup, 'SIGSTOP')
    const firstStopped = first.session.stop()

    const second = newSession(engine, 'kept-campaign')
    second.session.start()
    const secondGroup = await browserLoading(stall, second.sessionId)
    expect((await firstStopped).forced).toBe(true)
    expect(second.log.events).toEqual([])
    expect(existsSync(join(profileDir, 'saved-by-first-session'))).toBe(true)

    await second.session.stop()
    expectNothingLeft(first.sessionId, [firstGroup])
    expectNothingLeft(second.sessionId, [secondGroup])
    expect(existsSync(join(profileDir, 'saved-by-first-session'))).toBe(true)
  })

  it('maps qr (each rotation), authenticated and ready, once each, and a qr after ready to logged_out', async () => {
    const { session, sessionId, campaignId, log } = newSession(engineWith(whatsapp.chromiumArgs))
    const injected = whatsapp.nextSignal('injected')
    session.start()
    const first = await within(log.next('qr'), 15_000, 'the first qr')
    await within(injected, 5_000, 'the end of the injection')
    // ref, static key, identity key, ADV secret, platform: what the phone's camera reads.
    expect(first.qr.split(',')).toEqual([
      'fake-ref-1',
      btoa('static-key'),
      btoa('identity-key'),
      'adv-secret',
      'Chrome',
    ])
    const group = markedBrowser(sessionId)!.pgid

    whatsapp.sendToPhone('rotate')
    expect(await eventually(() => log.events.length === 2, 5_000)).toBe(true)
    expect(log.events[1]).toMatchObject({ type: 'qr', qr: expect.stringMatching(/^fake-ref-2,/) })

    const helpersInjected = whatsapp.nextSignal('helpers-injected')
    whatsapp.sendToPhone('synced')
    await within(log.next('authenticated'), 5_000, 'authenticated')
    await within(helpersInjected, 10_000, 'the injection of the helpers')
    // whatsapp-web.js emits authenticated again, then ready (see fakeWhatsApp.ts).
    whatsapp.sendToPhone('synced')
    await within(log.next('ready'), 5_000, 'ready')
    expect(log.types()).toEqual(['qr', 'qr', 'authenticated', 'ready'])

    // WhatsApp shows a QR to a linked device only after the phone unlinked it.
    whatsapp.sendToPhone('rotate')
    const terminated = await within(log.next('terminated'), 5_000, 'terminated')
    expect(terminated.kind).toBe('logged_out')

    await session.stop()
    expectNothingLeft(sessionId, [group])
    expect(log.types()).toEqual(['qr', 'qr', 'authenticated', 'ready', 'terminated'])
    expect(existsSync(join(dataDir, 'wwebjs', `session-${campaignId}`))).toBe(false)
  })

  it('links with a phone number: a pairing code (renewed) instead of a QR, then authenticated and ready (issue 14)', async () => {
    const engine = engineWith(whatsapp.chromiumArgs, { pairingCodeIntervalMs: 1_000 })
    const { session, sessionId, log } = newSession(engine, undefined, '447911123456')
    session.start()
    const first = await within(log.next('pairing_code'), 15_000, 'the first pairing code')
    expect(first.code).toBe('FAKE0001')
    expect(whatsapp.lastSignalQuery('pairing-code')?.get('phone')).toBe('447911123456')
    // whatsapp-web.js asks WhatsApp for a new code every interval while unpaired.
    expect(await eventually(() => log.events.length >= 2, 5_000)).toBe(true)
    expect(log.events[1]).toMatchObject({ type: 'pairing_code', code: 'FAKE0002' })
    const group = markedBrowser(sessionId)!.pgid

    const helpersInjected = whatsapp.nextSignal('helpers-injected')
    whatsapp.sendToPhone('synced')
    await within(log.next('authenticated'), 5_000, 'authenticated')
    await within(helpersInjected, 10_000, 'the injection of the helpers')
    whatsapp.sendToPhone('synced')
    await within(log.next('ready'), 5_000, 'ready')
    const types = log.types()
    expect(types.filter((type) => type !== 'pairing_code')).toEqual(['authenticated', 'ready'])
    expect(types.indexOf('authenticated')).toBeGreaterThan(types.lastIndexOf('pairing_code'))

    await session.stop()
    expectNothingLeft(sessionId, [group])
  })

  describe('through a proxy (issue 14)', () => {
    /** Only the stand-in's certificate leniency: every connection must go through the proxy. */
    const THROUGH_PROXY_ONLY = ['--ignore-certificate-errors']
    const proxyFrom = (url: string): ProxySettings => {
      const parsed = parseProxy(url)
      if (!parsed.ok) throw new Error(parsed.reason)
      return parsed.proxy
    }

    it("reaches WhatsApp Web only through the campaign's proxy", async () => {
      const proxy = await startConnectProxy({ targetPort: whatsapp.port })
      try {
        const engine = engineWith(THROUGH_PROXY_ONLY)
        const { session, sessionId, log } = newSession(engine, undefined, undefined, {
          server: proxy.url,
        })
        session.start()
        await within(log.next('qr'), 20_000, 'the first qr through the proxy')
        expect(proxy.tunnels()).toBeGreaterThan(0)
        expect(markedBrowser(sessionId)!.cmdline).toContain(`--proxy-server=${proxy.url}`)
        const group = markedBrowser(sessionId)!.pgid
        await session.stop()
        expectNothingLeft(sessionId, [group])
      } finally {
        await proxy.close()
      }
    })

    it('answers a proxy that requires credentials, which never reach the command line; WA_PROXY as the default', async () => {
      const credentials = { username: 'ann', password: 'hunter2-secret' }
      const proxy = await startConnectProxy({ targetPort: whatsapp.port, credentials })
      try {
        const address = new URL(proxy.url)
        const engine = engineWith(THROUGH_PROXY_ONLY, {
          defaultProxy: proxyFrom(`http://ann:hunter2-secret@${address.host}`),
        })
        const { session, sessionId, log } = newSession(engine)
        session.start()
        await within(log.next('qr'), 20_000, 'the first qr through the proxy with credentials')
        expect(proxy.authRefusals()).toBeGreaterThan(0)
        expect(proxy.tunnels()).toBeGreaterThan(0)
        const browser = markedBrowser(sessionId)!
        expect(browser.cmdline).toContain(`--proxy-server=${proxy.url}`)
        expect(browser.cmdline).not.toContain('hunter2')
        await session.stop()
        expectNothingLeft(sessionId, [browser.pgid])
      } finally {
        await proxy.close()
      }
    })
  })

  it('reports logged_out when the phone unlinks the device, and wipes the saved auth once Chromium is gone', async () => {
    const { session, sessionId, campaignId, log } = newSession(engineWith(whatsapp.chromiumArgs))
    const injected = whatsapp.nextSignal('injected')
    session.start()
    await within(log.next('qr'), 15_000, 'the first qr')
    await within(injected, 5_000, 'the end of the injection')
    const group = markedBrowser(sessionId)!.pgid
    const profileDir = join(dataDir, 'wwebjs', `session-${campaignId}`)
    expect(existsSync(profileDir)).toBe(true)

    // WhatsApp navigates to ?post_logout=1; whatsapp-web.js then re-injects into the page while
    // we tear it down: that rejection must stay caught (checked after each test).
    whatsapp.sendToPhone('logout')
    const terminated = await within(log.next('terminated'), 5_000, 'terminated')
    expect(terminated).toEqual({
      type: 'terminated',
      kind: 'logged_out',
      detail: 'WhatsApp disconnected: LOGOUT',
    })

    await session.stop()
    expectNothingLeft(sessionId, [group])
    expect(existsSync(profileDir)).toBe(false)
    expect(log.types()).toEqual(['qr', 'terminated'])
  })

  it('starts and stops 10 sessions 5 times over with nothing left and memory back near its start', async () => {
    const engine = engineWith(stall.chromiumArgs)
    const systemBefore = availableMemoryBytes()
    let ownAfterFirstRound = 0
    for (let round = 1; round <= 5; round += 1) {
      const sessions = Array.from({ length: 10 }, (_, index) =>
        newSession(engine, `fleet-${index}`)
      )
      const requestsBefore = stall.pageRequests()
      for (const { session } of sessions) session.start()
      // Every browser up and loading the stand-in page.
      const allUp = await eventually(
        () => stall.pageRequests() - requestsBefore >= sessions.length,
        30_000
      )
      expect(allUp, `round ${round}: all 10 browsers up`).toBe(true)
      const groups = sessions.map(({ sessionId }) => markedBrowser(sessionId)?.pgid ?? -1)

      const results = await Promise.all(sessions.map(({ session }) => session.stop()))
      for (const result of results) {
        expect(result.durationMs).toBeLessThan(DESTROY_TIMEOUT_MS + KILL_TIMEOUT_MS + SLACK_MS)
      }
      for (const { sessionId, log } of sessions) {
        expectNothingLeft(sessionId, groups)
        expect(log.events).toEqual([])
      }
      if (round === 1) ownAfterFirstRound = process.memoryUsage().rss
    }
    // Our own process: what the engine keeps per session must not pile up (the first round
    // warms up modules and caches, so it is the baseline).
    const ownGrowth = process.memoryUsage().rss - ownAfterFirstRound
    expect(ownGrowth).toBeLessThan(100 * 1024 * 1024)
    // The machine: ten leaked browsers would hold over 2 GB. Other work on the machine and page
    // cache move this figure by a few hundred MB, so the bound is loose.
    const systemDrop = systemBefore - availableMemoryBytes()
    expect(systemDrop).toBeLessThan(1024 * 1024 * 1024)
  }, 150_000)
})

function availableMemoryBytes(): number {
  const meminfo = readFileSync('/proc/meminfo', 'utf8')
  const match = /^MemAvailable:\s+(\d+) kB/m.exec(meminfo)
  return Number(match?.[1] ?? 0) * 1024
}
