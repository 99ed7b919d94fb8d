/**
 * A cluster takeover on the wwebjs engine, with a real Chromium and the stand-in for WhatsApp
 * Web: the node that takes a campaign over finds its profile locked to the host of the node that
 * ran it (`SingletonLock` → `<other-host>-<pid>`), which Chromium refuses; a session started as a
 * takeover removes those stale locks first and launches. Without `takeover` the lock is left
 * alone (a profile is never unlocked on a guess).
 */
import { mkdirSync, readlinkSync, rmSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createWwebjsEngine, type WwebjsEngine } from '../../src/engines/wwebjs/index.ts'
import {
  chromiumForTests,
  EventLog,
  killEverythingUnder,
  makeDataDir,
  startStandIn,
  within,
  type StandIn,
} from './support.ts'

const chromePath = chromiumForTests()
const dataDir = makeDataDir()
let whatsapp: StandIn
const engines: WwebjsEngine[] = []

beforeAll(async () => {
  whatsapp = await startStandIn('whatsapp')
})

afterEach(async () => {
  await Promise.all(engines.splice(0).map((created) => created.close()))
  killEverythingUnder(dataDir)
})

afterAll(async () => {
  killEverythingUnder(dataDir)
  rmSync(dataDir, { recursive: true, force: true })
  await whatsapp?.close()
})

function engine(): WwebjsEngine {
  const created = createWwebjsEngine({
    dataDir,
    chromePath,
    destroyTimeoutMs: 1_500,
    killTimeoutMs: 2_000,
    extraChromiumArgs: whatsapp.chromiumArgs,
  })
  engines.push(created)
  return created
}

/** The campaign's profile as the dead node on another host left it. */
function lockedByAnotherHost(campaignId: string): string {
  const profileDir = join(dataDir, 'wwebjs', `session-${campaignId}`)
  mkdirSync(profileDir, { recursive: true })
  symlinkSync('node-on-another-host-4242', join(profileDir, 'SingletonLock'))
  return profileDir
}

describe('a takeover on the wwebjs engine', () => {
  it('removes the profile lock another host left, and launches', async () => {
    const profileDir = lockedByAnotherHost('taken-over')
    const log = new EventLog()
    const session = engine().createSession({
      campaignId: 'taken-over',
      sessionId: `taken-over-${Date.now()}`,
      takeover: true,
      onEvent: log.onEvent,
    })
    session.start()
    await within(log.next('qr'), 20_000, 'the first qr')
    // The lock is the new browser's now.
    expect(readlinkSync(join(profileDir, 'SingletonLock'))).not.toBe('node-on-another-host-4242')
    await session.stop()
  })

  it('leaves the lock alone without takeover: Chromium refuses the profile', async () => {
    const profileDir = lockedByAnotherHost('not-taken-over')
    const log = new EventLog()
    const session = engine().createSession({
      campaignId: 'not-taken-over',
      sessionId: `not-taken-over-${Date.now()}`,
      onEvent: log.onEvent,
    })
    session.start()
    const ended = await within(log.next('terminated'), 20_000, 'the failed start')
    expect(ended).toMatchObject({ type: 'terminated', kind: 'start_failed' })
    expect(readlinkSync(join(profileDir, 'SingletonLock'))).toBe('node-on-another-host-4242')
    await session.stop()
  })
})
