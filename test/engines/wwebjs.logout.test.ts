/**
 * Issue 11, the unlink on the wwebjs engine with a real Chromium and the stand-in for WhatsApp
 * Web: `stop({ logout: true })` logs a linked device out (whatsapp-web.js's `logout()`), stays
 * within the stop's bound when the logout hangs, and deletes the profile once Chromium is gone;
 * `forgetLogin()` deletes a campaign's profile and nothing outside the profiles root.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { EngineSession } from '../../src/engines/engine.ts'
import { createWwebjsEngine, type WwebjsEngine } from '../../src/engines/wwebjs/index.ts'
import {
  chromiumForTests,
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

const DESTROY_TIMEOUT_MS = 1_500
const KILL_TIMEOUT_MS = 2_000
/** Polling and scheduling slack on a busy 2-core machine. */
const SLACK_MS = 1_000

const chromePath = chromiumForTests()
const dataDir = makeDataDir()
let whatsapp: StandIn
const engines: WwebjsEngine[] = []
let counter = 0

function engine(): WwebjsEngine {
  const created = createWwebjsEngine({
    dataDir,
    chromePath,
    destroyTimeoutMs: DESTROY_TIMEOUT_MS,
    killTimeoutMs: KILL_TIMEOUT_MS,
    extraChromiumArgs: whatsapp.chromiumArgs,
  })
  engines.push(created)
  return created
}

const profileOf = (campaignId: string) => join(dataDir, 'wwebjs', `session-${campaignId}`)

/** A session of a new campaign, started and showing its first QR. */
async function showingQr(on: WwebjsEngine) {
  const campaignId = `unlink-${++counter}`
  const sessionId = `session-${counter}-${Date.now()}`
  const log = new EventLog()
  const session: EngineSession = on.createSession({ campaignId, sessionId, onEvent: log.onEvent })
  const injected = whatsapp.nextSignal('injected')
  session.start()
  await within(log.next('qr'), 15_000, 'the first qr')
  await within(injected, 5_000, 'the end of the injection')
  const group = markedBrowser(sessionId)!.pgid
  expect(existsSync(profileOf(campaignId))).toBe(true)
  return { campaignId, sessionId, session, log, group }
}

/** The same, scanned until `ready` (see fakeWhatsApp.ts for the two `synced`). */
async function ready(on: WwebjsEngine) {
  const running = await showingQr(on)
  const helpersInjected = whatsapp.nextSignal('helpers-injected')
  whatsapp.sendToPhone('synced')
  await within(running.log.next('authenticated'), 5_000, 'authenticated')
  await within(helpersInjected, 10_000, 'the injection of the helpers')
  whatsapp.sendToPhone('synced')
  await within(running.log.next('ready'), 5_000, 'ready')
  return running
}

function expectNothingLeft(sessionId: string, group: number): void {
  expect(processesOf(sessionId, dataDir, [group])).toEqual([])
  expect(profileLocks(dataDir)).toEqual([])
}

const unhandled: unknown[] = []
const onUnhandled = (reason: unknown) => unhandled.push(reason)

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled)
  whatsapp = await startStandIn('whatsapp')
})

afterEach(async () => {
  await Promise.all(engines.splice(0).map((created) => created.close()))
  killEverythingUnder(dataDir)
  expect(unhandled, 'no unhandled rejection escaped').toEqual([])
})

afterAll(async () => {
  process.off('unhandledRejection', onUnhandled)
  killEverythingUnder(dataDir)
  rmSync(dataDir, { recursive: true, force: true })
  await whatsapp?.close()
})

describe('wwebjs engine: stop({ logout: true })', () => {
  it('logs a ready session out of WhatsApp, then deletes its profile once Chromium is gone', async () => {
    const { session, sessionId, campaignId, log, group } = await ready(engine())
    const loggedOut = whatsapp.nextSignal('logged-out')

    const result = await session.stop({ logout: true })
    await within(loggedOut, 1_000, 'the logout seen by WhatsApp')
    expect(result).toMatchObject({ forced: false, loggedOut: true })
    expect(result.durationMs).toBeLessThan(DESTROY_TIMEOUT_MS + KILL_TIMEOUT_MS + SLACK_MS)
    expectNothingLeft(sessionId, group)
    expect(existsSync(profileOf(campaignId))).toBe(false)
    // The page's own logout and Chromium's close are the unlink, not events of the session.
    expect(log.types()).toEqual(['qr', 'authenticated', 'ready'])
  })

  it('kills a logout that hangs within destroy + kill timeouts, and still deletes the profile', async () => {
    whatsapp.holdSignal('logged-out')
    const { session, sessionId, campaignId, group } = await ready(engine())
    const logoutSent = whatsapp.nextSignal('logged-out')

    const startedAt = Date.now()
    const result = await session.stop({ logout: true })
    const elapsed = Date.now() - startedAt
    await within(logoutSent, 1_000, 'the logout reaching WhatsApp (and hanging there)')
    expect(result).toMatchObject({ forced: true, loggedOut: false })
    expect(elapsed).toBeGreaterThanOrEqual(DESTROY_TIMEOUT_MS)
    expect(elapsed).toBeLessThan(DESTROY_TIMEOUT_MS + KILL_TIMEOUT_MS + SLACK_MS)
    expectNothingLeft(sessionId, group)
    expect(existsSync(profileOf(campaignId))).toBe(false)
  })

  it('tells WhatsApp nothing for a session that is not linked, and deletes the profile', async () => {
    const { session, sessionId, campaignId, group } = await showingQr(engine())
    const logoutsBefore = whatsapp.signalCount('logged-out')

    const result = await session.stop({ logout: true })
    expect(result).toMatchObject({ forced: false, loggedOut: false })
    expect(whatsapp.signalCount('logged-out')).toBe(logoutsBefore)
    expectNothingLeft(sessionId, group)
    expect(existsSync(profileOf(campaignId))).toBe(false)
  })
})

describe('wwebjs engine: forgetLogin', () => {
  it('refuses while a session runs, then deletes the profile; idempotent', async () => {
    const created = engine()
    const { session, sessionId, campaignId, group } = await showingQr(created)
    await expect(created.forgetLogin(campaignId)).rejects.toThrow(/running: stop it first/)
    expect(existsSync(profileOf(campaignId))).toBe(true)

    expect(await session.stop()).toMatchObject({ forced: false })
    expect(existsSync(profileOf(campaignId))).toBe(true) // a plain stop keeps the login
    await created.forgetLogin(campaignId)
    expect(existsSync(profileOf(campaignId))).toBe(false)
    await created.forgetLogin(campaignId)
    await created.forgetLogin('never-started')
    expectNothingLeft(sessionId, group)
  })

  it('refuses a campaign id that would lead out of the profiles root, and deletes nothing', async () => {
    const created = engine()
    mkdirSync(join(dataDir, 'wwebjs'), { recursive: true })
    mkdirSync(join(dataDir, 'victim'))
    writeFileSync(join(dataDir, 'victim', 'precious'), 'data')
    // `session-` + '/../../victim' would be <dataDir>/victim.
    for (const campaignId of ['/../../victim', 'x/../../../victim', '../victim']) {
      await expect(created.forgetLogin(campaignId)).rejects.toThrow(/refused/)
    }
    expect(existsSync(join(dataDir, 'victim', 'precious'))).toBe(true)
    rmSync(join(dataDir, 'victim'), { recursive: true, force: true })
  })
})
