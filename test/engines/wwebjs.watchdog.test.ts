/**
 * The wwebjs engine's processes for the cluster's watchdog (issue 12), with a real Chromium,
 * offline: `pids()` names the browser while it runs and nothing once it is torn down, and the
 * watchdog, given those pids, kills the whole browser while the main thread is blocked.
 */
import { rmSync } from 'node:fs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { hrtimeMs, startWatchdog, type Watchdog } from '../../src/cluster/watchdog.ts'
import type { Engine } from '../../src/engines/engine.ts'
import { createWwebjsEngine } from '../../src/engines/wwebjs/index.ts'
import {
  chromiumForTests,
  eventually,
  EventLog,
  killEverythingUnder,
  makeDataDir,
  markedBrowser,
  processesOf,
  profileLocks,
  startStandIn,
  within,
  type StandIn,
} from './support.ts'

const DESTROY_TIMEOUT_MS = 2_000
const KILL_TIMEOUT_MS = 2_000

const chromePath = chromiumForTests()
const dataDir = makeDataDir()
let blank: StandIn
const engines: Engine[] = []
const watchdogs: Watchdog[] = []
let counter = 0

/** A session on a page that loads but never becomes WhatsApp: its browser just runs. */
function newSession() {
  const engine = createWwebjsEngine({
    dataDir,
    chromePath,
    destroyTimeoutMs: DESTROY_TIMEOUT_MS,
    killTimeoutMs: KILL_TIMEOUT_MS,
    extraChromiumArgs: blank.chromiumArgs,
  })
  engines.push(engine)
  const campaignId = `campaign-${++counter}`
  const sessionId = `session-${counter}-${Date.now()}`
  const log = new EventLog()
  const session = engine.createSession({ campaignId, sessionId, onEvent: log.onEvent })
  return { session, campaignId, sessionId, log }
}

/** Waits until the session has launched its browser (puppeteer has handed it over). */
async function browserOf(session: ReturnType<typeof newSession>) {
  const launched = await eventually(() => session.session.pids!().length > 0, 15_000)
  expect(launched, 'the session reports its browser').toBe(true)
  const browser = markedBrowser(session.sessionId)
  expect(browser).toBeDefined()
  return browser!
}

beforeAll(async () => {
  blank = await startStandIn('blank')
})

afterEach(async () => {
  await Promise.all(watchdogs.splice(0).map((watchdog) => watchdog.stop()))
  await Promise.all(engines.splice(0).map((engine) => engine.close()))
  killEverythingUnder(dataDir)
})

afterAll(async () => {
  killEverythingUnder(dataDir)
  rmSync(dataDir, { recursive: true, force: true })
  await blank?.close()
})

describe('wwebjs session pids()', () => {
  it('names the browser, which leads its process group, from its launch until its teardown', async () => {
    const session = newSession()
    expect(session.session.pids!()).toEqual([])
    session.session.start()

    const browser = await browserOf(session)
    expect(session.session.pids!()).toEqual([browser.pid])
    expect(browser.pgid).toBe(browser.pid)

    await session.session.stop()
    expect(session.session.pids!()).toEqual([])
    expect(processesOf(session.sessionId, dataDir, [browser.pgid])).toEqual([])
  })

  it('lets the watchdog kill the whole browser while the main thread is blocked', async () => {
    const watchdog = startWatchdog({ blockedAfterMs: 400, beatMs: 100, pollMs: 25 })
    watchdogs.push(watchdog)
    const session = newSession()
    session.session.start()
    const browser = await browserOf(session)
    const group = processesOf(session.sessionId, dataDir, [browser.pgid])
    expect(group.length).toBeGreaterThan(1)

    watchdog.watch(session.campaignId, hrtimeMs(), session.session.pids!())
    let goneWhileBlocked = false
    const end = performance.now() + 2_000
    while (performance.now() < end && !goneWhileBlocked) {
      goneWhileBlocked = processesOf(session.sessionId, dataDir, [browser.pgid]).length === 0
    }

    expect(goneWhileBlocked, 'every process of the browser died while the thread was blocked').toBe(
      true
    )
    // The engine hears its browser die, and its teardown still ends with nothing left.
    const terminated = await within(session.log.next('terminated'), 10_000, 'terminated')
    expect(terminated.kind).toBe('crashed')
    await session.session.stop()
    expect(session.session.pids!()).toEqual([])
    expect(profileLocks(dataDir)).toEqual([])
  })
})
