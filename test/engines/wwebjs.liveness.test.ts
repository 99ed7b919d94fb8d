/**
 * The liveness probe on the wwebjs engine with a real Chromium, against the local stand-in for
 * WhatsApp Web (issue 15): a linked session that looks connected but is dead, because WhatsApp's
 * connection state changed without a `disconnected` event, or because its page froze while the
 * browser process stays up. Both end `unresponsive`, nothing of the session is left, and the
 * supervisor's restart brings the campaign back ready on its saved login.
 */
import { rmSync } from 'node:fs'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { createWwebjsEngine } from '../../src/engines/wwebjs/index.ts'
import type { CampaignView, SessionEvent, SessionStatus } from '../../src/session/api.ts'
import {
  createSessionService,
  type SessionTimeouts,
  type SupervisedSessionService,
} from '../../src/session/service.ts'
import {
  chromiumForTests,
  eventually,
  killEverythingUnder,
  makeDataDir,
  markedBrowser,
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
  initMs: 15_000,
  scanMs: 15_000,
  authMs: 30_000,
  destroyMs: 2_000,
  killMs: 2_000,
}
const LIVENESS = { intervalMs: 1_000, timeoutMs: 500, misses: 2 }

const services: SupervisedSessionService[] = []
const standIns: StandIn[] = []
let counter = 0

afterEach(async () => {
  await Promise.all(services.splice(0).map((service) => service.shutdown()))
  await Promise.all(standIns.splice(0).map((standIn) => standIn.close()))
  killEverythingUnder(dataDir)
})

afterAll(() => {
  killEverythingUnder(dataDir)
  rmSync(dataDir, { recursive: true, force: true })
})

/** A campaign linked by a scan (see fakeWhatsApp.ts for the two `synced`), its session ready. */
async function linkedSession() {
  const whatsapp = await startStandIn('whatsapp')
  standIns.push(whatsapp)
  const engine = createWwebjsEngine({
    dataDir,
    chromePath,
    destroyTimeoutMs: TIMEOUTS.destroyMs,
    killTimeoutMs: TIMEOUTS.killMs,
    extraChromiumArgs: whatsapp.chromiumArgs,
  })
  const service = createSessionService({
    engine,
    timeouts: TIMEOUTS,
    liveness: LIVENESS,
    maxSessions: 4,
    random: () => 0,
  })
  services.push(service)
  const campaignId = `live-${++counter}`
  const events: SessionEvent[] = []
  service.subscribe({ campaignId }, (event) => events.push(event))
  const injected = whatsapp.nextSignal('injected')
  const answer = service.requestSession({ campaignId, caller: alice })
  if (!answer.ok) throw new Error(`requestSession failed: ${answer.error}`)
  const sessionId = answer.view.sessionId!
  const view = () => service.getCampaign(campaignId)
  const reached = (check: (view: CampaignView) => boolean, what: string) =>
    within(
      new Promise<void>((resolve) => {
        const poll = () => (check(view()) ? resolve() : setTimeout(poll, 20))
        poll()
      }),
      30_000,
      what
    )
  await reached((v) => v.status === 'awaitingScan', 'the QR')
  await within(injected, 10_000, 'the end of the injection')
  const helpersInjected = whatsapp.nextSignal('helpers-injected')
  whatsapp.sendToPhone('synced')
  await within(helpersInjected, 10_000, 'the injection of the helpers')
  whatsapp.sendToPhone('synced')
  await reached((v) => v.status === 'ready', 'ready')
  // The scan linked the device: WhatsApp knows it from now on (a restart needs no scan).
  whatsapp.rememberDevice()
  const group = markedBrowser(sessionId)!.pgid
  const statusesOf = (id: string): SessionStatus[] =>
    events.flatMap((event) =>
      event.type === 'status' && event.sessionId === id ? [event.status] : []
    )
  return { whatsapp, service, campaignId, sessionId, group, events, view, reached, statusesOf }
}

/** The first session ended unresponsive, left nothing, and a restart of it came back ready. */
async function expectRestartedAfterUnresponsive(
  session: Awaited<ReturnType<typeof linkedSession>>,
  detail: string
) {
  const { sessionId, group, events, reached, statusesOf, view } = session
  await reached((v) => v.sessionId !== sessionId && v.status === 'ready', 'the restart, ready')
  expect(statusesOf(sessionId)).toEqual([
    'initializing',
    'awaitingScan',
    'authenticating',
    'ready',
    'failed',
    'cleaning',
    'cleaned',
  ])
  expect(events).toContainEqual(
    expect.objectContaining({ type: 'error', sessionId, code: 'unresponsive', detail })
  )
  // Nothing of the first session is left, not even its stopped renderer: what runs on the
  // campaign's profile now is the restarted session's browser, in a process group of its own.
  const restarted = view()
  const restartedGroup = markedBrowser(restarted.sessionId!)!.pgid
  expect(restartedGroup).not.toBe(group)
  expect(
    processesOf(sessionId, dataDir, [group]).filter((left) => left.pgid !== restartedGroup)
  ).toEqual([])
  expect(restarted.lastSeenAlive).not.toBeNull()
  // The restart ran on the saved login: no QR in its history.
  expect(restarted.history.map((entry) => entry.status)).toEqual(['initializing', 'ready'])
}

describe('liveness on the wwebjs engine', () => {
  it('ends a session whose WhatsApp connection state turns TIMEOUT unresponsive, and restarts it', async () => {
    const session = await linkedSession()
    const seen = session.view().lastSeenAlive!
    // Probes answered CONNECTED move lastSeenAlive on.
    await session.reached((v) => v.lastSeenAlive! > seen, 'a probe answered')
    session.whatsapp.sendToPhone('state:TIMEOUT')
    await expectRestartedAfterUnresponsive(
      session,
      'WhatsApp reports the connection state TIMEOUT (2 liveness probes in a row)'
    )
  }, 90_000)

  it('ends a session whose page is frozen (renderer stopped, browser up) unresponsive, and restarts it', async () => {
    const session = await linkedSession()
    const renderers = processesOf(session.sessionId, dataDir, [session.group]).filter((process) =>
      process.cmdline.includes('--type=renderer')
    )
    expect(renderers.length).toBeGreaterThan(0)
    for (const renderer of renderers) process.kill(renderer.pid, 'SIGSTOP')
    // The browser process itself is up: nothing would announce this death.
    expect(markedBrowser(session.sessionId)).toBeDefined()
    await expectRestartedAfterUnresponsive(
      session,
      `the WhatsApp page did not answer within ${LIVENESS.timeoutMs} ms (2 liveness probes in a row)`
    )
  }, 90_000)

  it('leaves no process and no profile lock once shut down', async () => {
    const session = await linkedSession()
    await session.service.shutdown()
    const gone = await eventually(
      () => processesOf(session.sessionId, dataDir, [session.group]).length === 0,
      5_000
    )
    expect(gone).toBe(true)
    expect(profileLocks(dataDir)).toEqual([])
    expect(session.service.liveEngineSessions()).toEqual([])
  }, 60_000)
})
