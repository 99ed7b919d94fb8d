/**
 * Sessions of the whole service (supervisor, campaign machine) on the wwebjs engine with a real
 * Chromium, offline: what a caller of the API sees when the network is missing, when WhatsApp
 * never shows up, when cleanup comes during a launch, and when Chromium dies; and that each time
 * the session ends `cleaned` with no process and no profile lock left.
 */
import { existsSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createWwebjsEngine } from '../../src/engines/wwebjs/index.ts'
import type { SessionEvent, SessionStatus } from '../../src/session/api.ts'
import {
  createSessionService,
  type SupervisedSessionService,
  type SessionTimeouts,
} from '../../src/session/service.ts'
import {
  chromiumForTests,
  eventually,
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

const chromePath = chromiumForTests()
const dataDir = makeDataDir()
const alice = { userId: 'alice', admin: false }
const TIMEOUTS: SessionTimeouts = {
  initMs: 4_000,
  scanMs: 4_000,
  authMs: 120_000,
  destroyMs: 2_000,
  killMs: 2_000,
}

let stall: StandIn
let whatsapp: StandIn
const services: SupervisedSessionService[] = []
let counter = 0

function serviceWith(chromiumArgs: string[]): SupervisedSessionService {
  const engine = createWwebjsEngine({
    dataDir,
    chromePath,
    destroyTimeoutMs: TIMEOUTS.destroyMs,
    killTimeoutMs: TIMEOUTS.killMs,
    extraChromiumArgs: chromiumArgs,
  })
  const service = createSessionService({ engine, timeouts: TIMEOUTS, maxSessions: 10 })
  services.push(service)
  return service
}

/** Starts a session for a new campaign and records every status it goes through. */
function startSession(service: SupervisedSessionService) {
  const campaignId = `campaign-${++counter}`
  const answer = service.requestSession({ campaignId, caller: alice })
  if (!answer.ok) throw new Error(`requestSession failed: ${answer.error}`)
  const sessionId = answer.view.sessionId!
  const events: SessionEvent[] = []
  service.subscribe({ sessionId }, (event) => events.push(event))
  const statuses = () => events.flatMap((event) => (event.type === 'status' ? [event.status] : []))
  const reached = (status: SessionStatus) =>
    within(
      new Promise<void>((resolve) => {
        const check = () => (statuses().includes(status) ? resolve() : setTimeout(check, 10))
        check()
      }),
      15_000,
      `status ${status}`
    )
  return { campaignId, sessionId, events, statuses, reached }
}

/** A session of a new campaign, linked: the stand-in's phone scans, WhatsApp syncs, `ready`. */
async function linkedSession(service: SupervisedSessionService) {
  const injected = whatsapp.nextSignal('injected')
  const session = startSession(service)
  await session.reached('awaitingScan')
  await within(injected, 5_000, 'the end of the injection')
  const helpersInjected = whatsapp.nextSignal('helpers-injected')
  whatsapp.sendToPhone('synced')
  await session.reached('authenticating')
  await within(helpersInjected, 10_000, 'the injection of the helpers')
  whatsapp.sendToPhone('synced')
  await session.reached('ready')
  return session
}

function expectNothingLeft(
  service: SupervisedSessionService,
  sessionId: string,
  groups: number[] = []
) {
  expect(processesOf(sessionId, dataDir, groups)).toEqual([])
  expect(profileLocks(dataDir)).toEqual([])
  expect(service.liveEngineSessions()).toEqual([])
}

beforeAll(async () => {
  stall = await startStandIn('stall')
  whatsapp = await startStandIn('whatsapp')
})

afterEach(async () => {
  await Promise.all(services.splice(0).map((service) => service.shutdown()))
  killEverythingUnder(dataDir)
})

afterAll(async () => {
  killEverythingUnder(dataDir)
  rmSync(dataDir, { recursive: true, force: true })
  await stall?.close()
  await whatsapp?.close()
})

describe('a session on the wwebjs engine', () => {
  it('with no network: fails at once (engine_failed), then is cleaned', async () => {
    const service = serviceWith(NO_NETWORK_ARGS)
    const session = startSession(service)
    await session.reached('cleaned')
    expect(session.statuses()).toEqual(['failed', 'cleaning', 'cleaned'])
    // A finished session is remembered by how it ended.
    const view = service.getCampaign(session.campaignId)
    expect(view.status).toBe('failed')
    expect(view.reason).toBe('engine_failed')
    expect(view.history.find((entry) => entry.status === 'failed')?.detail).toBe(
      'This machine cannot reach web.whatsapp.com (DNS) — initialize() failed: net::ERR_NAME_NOT_RESOLVED at https://web.whatsapp.com/'
    )
    expect(session.events).toContainEqual(
      expect.objectContaining({ type: 'error', code: 'engine_failed' })
    )
    expectNothingLeft(service, session.sessionId)
  })

  it('when WhatsApp never shows up: the init deadline fires, timedOut, then cleaned', async () => {
    const service = serviceWith(stall.chromiumArgs)
    const startedAt = Date.now()
    const session = startSession(service)
    await session.reached('cleaned')
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(TIMEOUTS.initMs - 50)
    expect(session.statuses()).toEqual(['timedOut', 'cleaning', 'cleaned'])
    expect(service.getCampaign(session.campaignId)).toMatchObject({
      status: 'timedOut',
      reason: 'init_timeout',
    })
    expectNothingLeft(service, session.sessionId)
  })

  it('cleanup requested while Chromium is still launching answers once nothing is left', async () => {
    const service = serviceWith(stall.chromiumArgs)
    const session = startSession(service)
    const spawned = await eventually(
      () => markedBrowser(session.sessionId) !== undefined,
      15_000,
      2
    )
    expect(spawned).toBe(true)
    const group = markedBrowser(session.sessionId)!.pgid

    const result = await service.cleanupSession(session.campaignId)
    expect(result).toEqual({
      campaignId: session.campaignId,
      sessionId: session.sessionId,
      hadSession: true,
    })
    expect(service.getCampaign(session.campaignId).status).toBe('cleaned')
    expect(service.getCampaign(session.campaignId).reason).toBe('cleanup_requested')
    expectNothingLeft(service, session.sessionId, [group])
  })

  it('when Chromium is killed from outside while the QR is shown: fails at once, then cleaned', async () => {
    const service = serviceWith(whatsapp.chromiumArgs)
    const session = startSession(service)
    await session.reached('awaitingScan')
    expect(service.getCampaign(session.campaignId).qr?.qr).toMatch(/^fake-ref-1,/)
    const group = markedBrowser(session.sessionId)!.pgid

    const killedAt = Date.now()
    process.kill(-group, 'SIGKILL')
    await session.reached('failed')
    // At once: not at the scan deadline.
    expect(Date.now() - killedAt).toBeLessThan(1_000)
    await session.reached('cleaned')
    expect(session.statuses()).toEqual(['awaitingScan', 'failed', 'cleaning', 'cleaned'])
    const view = service.getCampaign(session.campaignId)
    expect(view.reason).toBe('engine_failed')
    expect(view.history.find((entry) => entry.status === 'failed')?.detail).toBe(
      'Chromium was killed (out of memory?) — Chromium exited unexpectedly (killed by SIGKILL)'
    )
    expectNothingLeft(service, session.sessionId, [group])
  })

  it('when nobody scans the QR: the scan deadline fires, timedOut, then cleaned', async () => {
    const service = serviceWith(whatsapp.chromiumArgs)
    const session = startSession(service)
    await session.reached('awaitingScan')
    const shownAt = Date.now()
    await session.reached('cleaned')
    expect(Date.now() - shownAt).toBeGreaterThanOrEqual(TIMEOUTS.scanMs - 50)
    expect(session.statuses()).toEqual(['awaitingScan', 'timedOut', 'cleaning', 'cleaned'])
    expect(service.getCampaign(session.campaignId)).toMatchObject({
      status: 'timedOut',
      reason: 'scan_timeout',
    })
    expectNothingLeft(service, session.sessionId)
  })

  it('when the phone scans: authenticating, ready; cleanup then tears the linked session down', async () => {
    const service = serviceWith(whatsapp.chromiumArgs)
    const session = await linkedSession(service)
    expect(service.getCampaign(session.campaignId).isConnected).toBe(true)
    const group = markedBrowser(session.sessionId)!.pgid

    await service.cleanupSession(session.campaignId)
    expect(session.statuses()).toEqual([
      'awaitingScan',
      'authenticating',
      'ready',
      'cleaning',
      'cleaned',
    ])
    expectNothingLeft(service, session.sessionId, [group])
  })

  it('unlink of a ready session: the device is logged out of WhatsApp, the login deleted, nothing left', async () => {
    const service = serviceWith(whatsapp.chromiumArgs)
    const session = await linkedSession(service)
    const group = markedBrowser(session.sessionId)!.pgid
    const loggedOut = whatsapp.nextSignal('logged-out')

    const result = await service.unlinkCampaign(session.campaignId)
    expect(result).toEqual({
      campaignId: session.campaignId,
      sessionId: session.sessionId,
      hadSession: true,
      loginDeleted: true,
    })
    await within(loggedOut, 1_000, 'the logout at WhatsApp')
    expect(session.statuses().slice(-2)).toEqual(['cleaning', 'cleaned'])
    expect(service.getCampaign(session.campaignId).reason).toBe('unlinked')
    expect(existsSync(join(dataDir, 'wwebjs', `session-${session.campaignId}`))).toBe(false)
    expectNothingLeft(service, session.sessionId, [group])
  })

  it('a frozen Chromium is still cleaned within the destroy and kill timeouts', async () => {
    const service = serviceWith(stall.chromiumArgs)
    const requested = stall.nextPageRequest()
    const session = startSession(service)
    await within(requested, 15_000, 'the page request')
    const group = markedBrowser(session.sessionId)!.pgid
    process.kill(-group, 'SIGSTOP')

    const requestedAt = Date.now()
    await service.cleanupSession(session.campaignId)
    expect(Date.now() - requestedAt).toBeLessThan(TIMEOUTS.destroyMs + TIMEOUTS.killMs + 1_000)
    const cleaned = session.events.find(
      (event) => event.type === 'status' && event.status === 'cleaned'
    )
    expect(cleaned).toMatchObject({ teardown: { forced: true } })
    expectNothingLeft(service, session.sessionId, [group])
  })
})
