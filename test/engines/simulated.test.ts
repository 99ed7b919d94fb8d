import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { EngineEvent, EngineSession, EngineStopOptions } from '../../src/engines/engine.ts'
import {
  createSimulatedEngine,
  fakeWhatsAppQr,
  type SimulatedEngine,
} from '../../src/engines/simulated.ts'

const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms)

beforeEach(() => {
  vi.useFakeTimers()
})
afterEach(() => {
  vi.useRealTimers()
})

function run(engine = createSimulatedEngine(), campaignId = 'spring-sale', sessionId = 's1') {
  const events: EngineEvent[] = []
  const session = engine.createSession({ campaignId, sessionId, onEvent: (e) => events.push(e) })
  session.start()
  return { engine, session, events }
}

describe('simulated engine', () => {
  it('shows its first QR after 300 ms and a new one every 20 s', async () => {
    const { events } = run()
    await advance(299)
    expect(events).toEqual([])
    await advance(1)
    expect(events).toHaveLength(1)
    await advance(20_000)
    expect(events.map((e) => e.type)).toEqual(['qr', 'qr'])
    const [first, second] = events as Array<Extract<EngineEvent, { type: 'qr' }>>
    expect(first!.qr).not.toBe(second!.qr)
  })

  it("makes QR texts shaped like WhatsApp Web's", () => {
    const qr = fakeWhatsAppQr()
    const fields = qr.split(',')
    expect(fields).toHaveLength(5)
    expect(fields[0]).toMatch(/^2@[A-Za-z0-9+/=]+$/)
    expect(qr.length).toBeGreaterThanOrEqual(152)
  })

  it('honours SIM_QR_DELAY_MS and SIM_QR_ROTATE_MS', async () => {
    const { events } = run(createSimulatedEngine({ qrDelayMs: 10, qrRotateMs: 100 }))
    await advance(310)
    expect(events.filter((e) => e.type === 'qr')).toHaveLength(4)
  })

  it('plays the phone: scan → authenticated → ready, and remembers the link', async () => {
    const { engine, events, session } = run()
    expect(engine.scan('spring-sale')).toBe(false) // no QR yet
    await advance(300)
    expect(engine.scan('spring-sale')).toBe(true)
    expect(engine.scan('spring-sale')).toBe(false) // already scanned
    await advance(500)
    expect(events.map((e) => e.type)).toEqual(['qr', 'authenticated', 'ready'])
    expect(engine.isLinked('spring-sale')).toBe(true)
    const stopped = session.stop()
    await advance(20)
    await stopped

    const restored = run(engine, 'spring-sale', 's2')
    await advance(800)
    expect(restored.events.map((e) => e.type)).toEqual(['authenticated', 'ready'])
  })

  it('forgets the link when the phone logs out', async () => {
    const engine = createSimulatedEngine()
    const { events } = run(engine)
    await advance(300)
    engine.scan('spring-sale')
    await advance(500)
    expect(engine.disconnect('spring-sale')).toBe(true)
    expect(events.at(-1)).toMatchObject({ type: 'terminated', kind: 'logged_out' })
    expect(engine.isLinked('spring-sale')).toBe(false)
  })

  it('dies without warning on crash, and says nothing more', async () => {
    const { engine, events } = run()
    await advance(300)
    expect(engine.crash('spring-sale')).toBe(true)
    expect(engine.crash('spring-sale')).toBe(false)
    await advance(60_000)
    expect(events.map((e) => e.type)).toEqual(['qr', 'terminated'])
    expect(events[1]).toMatchObject({ kind: 'crashed' })
  })

  it.each([
    ['hang', []],
    ['error', ['terminated']],
    ['restored', ['authenticated', 'ready']],
  ] as const)('starts with behaviour %s', async (startup, expected) => {
    const engine = createSimulatedEngine()
    engine.setBehaviour('spring-sale', { startup })
    const { events } = run(engine)
    await advance(60_000)
    expect(events.map((e) => e.type)).toEqual(expected)
  })

  it('stops idempotently, delivers nothing after stop, and is gone after it', async () => {
    const { engine, session, events } = run()
    await advance(300)
    const first = session.stop()
    expect(session.stop()).toBe(first)
    await advance(30_000)
    expect(await first).toEqual({ forced: false, durationMs: 20 })
    expect(events).toHaveLength(1)
    expect(engine.liveCount()).toBe(0)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('kills a hanging teardown after destroyTimeoutMs', async () => {
    const engine = createSimulatedEngine({ destroyTimeoutMs: 1_000, killDelayMs: 10 })
    engine.setBehaviour('spring-sale', { teardown: 'hang' })
    const { session } = run(engine)
    const stopped = session.stop()
    await advance(1_010)
    expect(await stopped).toEqual({ forced: true, durationMs: 1_010 })
    expect(engine.counters()).toEqual({ started: 1, stopped: 1, forcedStops: 1, probes: 0 })
  })

  // Issue 8: anyone could preset a behaviour for any campaign, and the map never shrank.
  it('remembers the behaviours of at most maxRememberedCampaigns campaigns, the newest', () => {
    const engine = createSimulatedEngine({ maxRememberedCampaigns: 100 })
    for (let i = 0; i < 10_000; i++) engine.setBehaviour(`preset-${i}`, { startup: 'hang' })
    expect(engine.rememberedCount()).toBeLessThanOrEqual(100)
    expect(engine.behaviourOf('preset-9999')).toEqual({
      startup: 'hang',
      teardown: 'normal',
      liveness: 'healthy',
    })
    expect(engine.behaviourOf('preset-0')).toEqual({
      startup: 'qr',
      teardown: 'normal',
      liveness: 'healthy',
    })
  })

  it('counts links too, forgets the older half past the bound, and keeps what was changed last', async () => {
    const engine = createSimulatedEngine({ maxRememberedCampaigns: 10 })
    const { session } = run(engine, 'linked-one')
    await advance(300)
    engine.scan('linked-one')
    await advance(500)
    for (let i = 0; i < 6; i++) engine.setBehaviour(`p${i}`, { startup: 'hang' })
    engine.setBehaviour('linked-one', { startup: 'error' }) // now the newest
    for (let i = 0; i < 4; i++) engine.setBehaviour(`q${i}`, { startup: 'hang' })
    // The 11th: the older half is forgotten, the newest 5 are kept.
    expect(engine.rememberedCount()).toBe(5)
    expect(engine.isLinked('linked-one')).toBe(true)
    expect(engine.behaviourOf('linked-one').startup).toBe('error')
    expect(engine.behaviourOf('p5').startup).toBe('qr')
    for (let i = 0; i < 6; i++) engine.setBehaviour(`r${i}`, { startup: 'hang' })
    expect(engine.rememberedCount()).toBe(5)
    expect(engine.isLinked('linked-one')).toBe(false)
    const stopped = session.stop()
    await advance(20)
    await stopped
  })

  it('keeps nothing for a campaign set back to the default behaviour', () => {
    const engine = createSimulatedEngine()
    engine.setBehaviour('spring-sale', { teardown: 'hang' })
    expect(engine.rememberedCount()).toBe(1)
    engine.setBehaviour('spring-sale', { teardown: 'normal' })
    expect(engine.rememberedCount()).toBe(0)
  })
})

// Issue 11: a restart must find linked campaigns linked, as the real engine finds its profiles.
describe('simulated engine with a data directory (saved logins)', () => {
  let dataDir: string
  const loginFile = (campaignId: string) => join(dataDir, 'simulated', `${campaignId}.json`)

  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-simulated-'))
  })
  afterEach(() => {
    rmSync(dataDir, { recursive: true, force: true })
  })

  /** A session of `campaignId` scanned until ready; resolves with its engine and session. */
  async function linked(engine: SimulatedEngine, campaignId = 'spring-sale') {
    const linking = run(engine, campaignId, `${campaignId}-s1`)
    await advance(300)
    expect(engine.scan(campaignId)).toBe(true)
    await advance(500)
    expect(linking.events.map((e) => e.type)).toEqual(['qr', 'authenticated', 'ready'])
    return linking
  }

  async function stopped(session: EngineSession, options?: EngineStopOptions) {
    const stopping = session.stop(options)
    await advance(20)
    return stopping
  }

  it('saves the login at ready; a new engine on the same directory starts without a QR', async () => {
    const first = createSimulatedEngine({ dataDir })
    const { session } = run(first)
    await advance(300)
    first.scan('spring-sale')
    expect(existsSync(loginFile('spring-sale'))).toBe(false) // not before ready
    await advance(500)
    expect(JSON.parse(readFileSync(loginFile('spring-sale'), 'utf8'))).toMatchObject({
      campaignId: 'spring-sale',
    })
    expect(readdirSync(join(dataDir, 'simulated'))).toEqual(['spring-sale.json'])
    await stopped(session)
    await first.close()

    const restarted = createSimulatedEngine({ dataDir })
    expect(restarted.isLinked('spring-sale')).toBe(true)
    expect(restarted.isLinked('other')).toBe(false)
    const restored = run(restarted, 'spring-sale', 's2')
    await advance(800)
    expect(restored.events.map((e) => e.type)).toEqual(['authenticated', 'ready'])
    await stopped(restored.session)
  })

  it('keeps the login through a crash', async () => {
    const engine = createSimulatedEngine({ dataDir })
    const { session } = await linked(engine)
    expect(engine.crash('spring-sale')).toBe(true)
    await stopped(session)
    expect(existsSync(loginFile('spring-sale'))).toBe(true)
  })

  it('deletes the login when the phone logs the device out', async () => {
    const engine = createSimulatedEngine({ dataDir })
    const { session, events } = await linked(engine)
    expect(engine.disconnect('spring-sale')).toBe(true)
    expect(events.at(-1)).toMatchObject({ type: 'terminated', kind: 'logged_out' })
    expect(existsSync(loginFile('spring-sale'))).toBe(false)
    await stopped(session)
    expect(createSimulatedEngine({ dataDir }).isLinked('spring-sale')).toBe(false)
  })

  it('stop({ logout: true }) logs a ready session out and deletes the login', async () => {
    const engine = createSimulatedEngine({ dataDir })
    const { session } = await linked(engine)
    const result = await stopped(session, { logout: true })
    expect(result).toEqual({ forced: false, durationMs: 20, loggedOut: true })
    expect(existsSync(loginFile('spring-sale'))).toBe(false)
    expect(engine.isLinked('spring-sale')).toBe(false)
    // The first call decides: a later stop without logout returns the same promise.
    expect(session.stop()).toBe(session.stop({ logout: true }))

    const next = run(engine, 'spring-sale', 's2')
    await advance(300)
    expect(next.events.map((e) => e.type)).toEqual(['qr'])
    await stopped(next.session)
  })

  it('stop({ logout: true }) before the scan deletes a saved login without a logout, and stays bounded', async () => {
    const engine = createSimulatedEngine({ dataDir, destroyTimeoutMs: 1_000, killDelayMs: 10 })
    const { session } = await linked(engine)
    await stopped(session)
    engine.setBehaviour('spring-sale', { startup: 'hang', teardown: 'hang' })
    const hanging = run(engine, 'spring-sale', 's2')
    const stopping = hanging.session.stop({ logout: true })
    await advance(1_010)
    expect(await stopping).toEqual({ forced: true, durationMs: 1_010, loggedOut: false })
    expect(existsSync(loginFile('spring-sale'))).toBe(false)
  })

  it('a plain stop keeps the login', async () => {
    const engine = createSimulatedEngine({ dataDir })
    const { session } = await linked(engine)
    expect(await stopped(session)).toEqual({ forced: false, durationMs: 20 })
    expect(existsSync(loginFile('spring-sale'))).toBe(true)
  })

  it('forgetLogin deletes the login, is idempotent, and refuses while a session runs', async () => {
    const engine = createSimulatedEngine({ dataDir })
    const { session } = await linked(engine)
    await expect(engine.forgetLogin('spring-sale')).rejects.toThrow(/running: stop it first/)
    expect(existsSync(loginFile('spring-sale'))).toBe(true)
    await stopped(session)

    await engine.forgetLogin('spring-sale')
    expect(existsSync(loginFile('spring-sale'))).toBe(false)
    expect(engine.isLinked('spring-sale')).toBe(false)
    await engine.forgetLogin('spring-sale')
    await engine.forgetLogin('never-linked')
  })

  it('forgetLogin refuses a campaign id that would leave its directory, and deletes nothing', async () => {
    const engine = createSimulatedEngine({ dataDir })
    await linked(engine, 'victim').then(({ session }) => stopped(session))
    mkdirSync(join(dataDir, 'simulated', 'sub'))
    writeFileSync(join(dataDir, 'keep.json'), '{}')
    for (const campaignId of ['../keep', 'sub/../victim', '/etc/passwd']) {
      await expect(engine.forgetLogin(campaignId)).rejects.toThrow(/refused/)
    }
    expect(existsSync(join(dataDir, 'keep.json'))).toBe(true)
    expect(existsSync(loginFile('victim'))).toBe(true)
  })
})

describe('simulated engine without a data directory', () => {
  it('keeps links in memory only, and forgetLogin forgets them', async () => {
    const engine = createSimulatedEngine()
    const { session } = run(engine)
    await advance(300)
    engine.scan('spring-sale')
    await advance(500)
    const stopping = session.stop()
    await advance(20)
    await stopping
    expect(engine.isLinked('spring-sale')).toBe(true)
    expect(createSimulatedEngine().isLinked('spring-sale')).toBe(false)
    await engine.forgetLogin('spring-sale')
    expect(engine.isLinked('spring-sale')).toBe(false)
    expect(engine.rememberedCount()).toBe(0)
  })
})
