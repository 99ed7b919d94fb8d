import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createActor, type AnyStateNode, type InspectionEvent } from 'xstate'
import { toDirectedGraph, type DirectedGraphNode } from 'xstate/graph'
import type { Engine } from '../../src/engines/engine.ts'
import {
  createCampaignMachine,
  statusOf,
  type CampaignEmitted,
  type CampaignInput,
} from '../../src/session/campaignMachine.ts'
import { createEngineControl } from '../../src/session/engineControl.ts'
import { probeOffsetMs } from '../../src/session/liveness.ts'
import { createScriptedEngine, type StopBehaviour } from '../support/scriptedEngine.ts'

/*
 * One machine for the whole file, so the transitions taken by every test can be checked
 * against the machine's full list at the end. Each test gets its own scripted engine through
 * the delegating engine below.
 */
let scripted = createScriptedEngine()
let stopBehaviour: StopBehaviour = 'settles'
const delegatingEngine: Engine = {
  name: 'delegating',
  createSession: (options) => scripted.engine.createSession(options),
  close: async () => {},
}
const machine = createCampaignMachine({
  engines: createEngineControl(delegatingEngine),
  now: () => Date.now(),
})
const taken = new Set<unknown>()

const TIMEOUTS = { initMs: 30_000, scanMs: 30_000, authMs: 120_000, teardownMs: 16_000 }
const LIVENESS = { intervalMs: 30_000, timeoutMs: 10_000, misses: 2 }
let sessionCount = 0

function start(input: Partial<CampaignInput> = {}) {
  const sessionId = `session-${++sessionCount}`
  const emitted: CampaignEmitted[] = []
  const actor = createActor(machine, {
    input: {
      campaignId: 'spring-sale',
      sessionId,
      timeouts: TIMEOUTS,
      awaitPredecessor: false,
      liveness: LIVENESS,
      ...input,
    },
    inspect: (event: InspectionEvent) => {
      if (event.type === '@xstate.microstep') {
        for (const transition of event._transitions) taken.add(transition)
      }
    },
  })
  actor.on('*', (event) => emitted.push(event))
  actor.start()
  const status = () => statusOf(actor.getSnapshot().value)
  const engineSession = () => scripted.last()
  const qr = (text = 'qr-1') => engineSession().emit({ type: 'qr', qr: text })
  return { actor, emitted, status, engineSession, qr, sessionId }
}

const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms)

beforeEach(() => {
  vi.useFakeTimers({ now: new Date('2026-01-01T12:00:00.000Z') })
  stopBehaviour = 'settles'
  scripted = createScriptedEngine(() => stopBehaviour)
})

afterEach(() => {
  vi.useRealTimers()
})

describe('campaign machine: starting', () => {
  it('waits in idle until START, then starts exactly one engine', () => {
    const { actor, status } = start()
    expect(status()).toBe('idle')
    expect(scripted.sessions).toHaveLength(0)
    actor.send({ type: 'START' })
    expect(status()).toBe('initializing')
    expect(scripted.sessions).toHaveLength(1)
    expect(scripted.last().started).toBe(true)
    expect(actor.getSnapshot().context.phaseDeadline).toBe(Date.now() + TIMEOUTS.initMs)
  })

  it('starts the engine only after the previous session of the campaign is gone', () => {
    const { actor } = start({ awaitPredecessor: true })
    actor.send({ type: 'START' })
    expect(actor.getSnapshot().matches({ initializing: 'waitingForPredecessor' })).toBe(true)
    expect(scripted.sessions).toHaveLength(0)
    actor.send({ type: 'PREDECESSOR.STOPPED' })
    expect(actor.getSnapshot().matches({ initializing: 'startingEngine' })).toBe(true)
    expect(scripted.sessions).toHaveLength(1)
  })

  it('shows the first QR with attempt 1 and the scan deadline as expiresAt', async () => {
    const { actor, status, qr, emitted, sessionId } = start()
    actor.send({ type: 'START' })
    await advance(300)
    qr('first')
    expect(status()).toBe('awaitingScan')
    const { context } = actor.getSnapshot()
    expect(context.qr).toEqual({ qr: 'first', attempt: 1, expiresAt: Date.now() + TIMEOUTS.scanMs })
    expect(context.phaseDeadline).toBe(Date.now() + TIMEOUTS.scanMs)
    expect(emitted).toContainEqual({
      type: 'qr',
      sessionId,
      qr: 'first',
      attempt: 1,
      expiresAt: context.phaseDeadline,
      at: Date.now(),
    })
  })

  it('comes up ready without a scan when saved auth is reused, within the init deadline', async () => {
    const { actor, status, engineSession, emitted } = start()
    actor.send({ type: 'START' })
    engineSession().emit({ type: 'authenticated' })
    expect(status()).toBe('initializing')
    await advance(29_000)
    engineSession().emit({ type: 'ready' })
    expect(status()).toBe('ready')
    expect(actor.getSnapshot().context.phaseDeadline).toBeNull()
    expect(emitted.some((e) => e.type === 'ready')).toBe(true)
  })
})

describe('campaign machine: deadlines', () => {
  it('times out with init_timeout when no QR comes, then cleans up', async () => {
    const { actor, status, engineSession, emitted } = start()
    actor.send({ type: 'START' })
    await advance(TIMEOUTS.initMs - 1)
    expect(status()).toBe('initializing')
    await advance(1)
    expect(status()).toBe('cleaned')
    expect(actor.getSnapshot().status).toBe('done')
    expect(actor.getSnapshot().context.reason).toBe('init_timeout')
    expect(engineSession().stopCalls).toBe(1)
    expect(emitted.filter((e) => e.type === 'status').map((e) => e.status)).toEqual([
      'initializing',
      'timedOut',
      'cleaning',
      'cleaned',
    ])
    const error = emitted.find((e) => e.type === 'error')
    expect(error).toMatchObject({ code: 'init_timeout' })
  })

  it('times out with scan_timeout 30 s after the first QR, however often the QR rotates', async () => {
    const { actor, status, qr, emitted, sessionId } = start()
    actor.send({ type: 'START' })
    qr('q1')
    await advance(20_000)
    qr('q2')
    expect(actor.getSnapshot().context.qr).toMatchObject({ qr: 'q2', attempt: 2 })
    await advance(9_999)
    expect(status()).toBe('awaitingScan')
    await advance(1)
    expect(status()).toBe('cleaned')
    expect(actor.getSnapshot().output).toMatchObject({
      reason: 'scan_timeout',
      endedFrom: 'awaitingScan',
    })
    expect(emitted.find((e) => e.type === 'error')).toEqual({
      type: 'error',
      sessionId,
      code: 'scan_timeout',
      message: 'The QR code was not scanned within 30 s; the session was cleaned up.',
      detail: null,
      at: Date.now(),
    })
  })

  it('moves to authenticating on the scan and times out with auth_timeout if ready never comes', async () => {
    const { actor, status, qr, engineSession } = start()
    actor.send({ type: 'START' })
    qr()
    await advance(10_000)
    engineSession().emit({ type: 'authenticated' })
    expect(status()).toBe('authenticating')
    expect(actor.getSnapshot().context.phaseDeadline).toBe(Date.now() + TIMEOUTS.authMs)
    expect(actor.getSnapshot().context.qr).toBeNull()
    await advance(TIMEOUTS.authMs)
    expect(status()).toBe('cleaned')
    expect(actor.getSnapshot().context.reason).toBe('auth_timeout')
  })

  it('goes back to the QR when WhatsApp shows a new one after a scan that did not take', async () => {
    const { actor, status, qr, engineSession } = start()
    actor.send({ type: 'START' })
    qr('q1')
    engineSession().emit({ type: 'authenticated' })
    qr('q2')
    expect(status()).toBe('awaitingScan')
    expect(actor.getSnapshot().context.qr).toMatchObject({ qr: 'q2', attempt: 2 })
  })

  it('is linked when ready follows the scan', async () => {
    const { actor, status, qr, engineSession } = start()
    actor.send({ type: 'START' })
    qr()
    engineSession().emit({ type: 'authenticated' })
    await advance(2_000)
    engineSession().emit({ type: 'ready' })
    expect(status()).toBe('ready')
    // Deadlines of earlier phases no longer apply.
    await advance(TIMEOUTS.authMs + TIMEOUTS.scanMs)
    expect(status()).toBe('ready')
  })

  it('accepts ready straight from the QR (engines that skip authenticated)', () => {
    const { actor, status, qr, engineSession } = start()
    actor.send({ type: 'START' })
    qr()
    engineSession().emit({ type: 'ready' })
    expect(status()).toBe('ready')
  })
})

describe('campaign machine: failures', () => {
  it.each([
    ['initializing', 'start_failed', 'engine_failed'],
    ['awaitingScan', 'crashed', 'engine_failed'],
    ['authenticating', 'engine_error', 'engine_failed'],
    ['ready', 'logged_out', 'logged_out'],
    // Issue 12: the node lost the campaign's lease and killed the engine.
    ['awaitingScan', 'lease_lost', 'node_lost'],
    ['ready', 'lease_lost', 'node_lost'],
  ] as const)('fails from %s when the engine terminates (%s → %s)', async (from, kind, reason) => {
    const { actor, status, qr, engineSession, emitted, sessionId } = start()
    actor.send({ type: 'START' })
    if (from !== 'initializing') qr()
    if (from === 'authenticating' || from === 'ready')
      engineSession().emit({ type: 'authenticated' })
    if (from === 'ready') engineSession().emit({ type: 'ready' })
    expect(status()).toBe(from)
    engineSession().emit({ type: 'terminated', kind, detail: 'boom' })
    await advance(0)
    expect(status()).toBe('cleaned')
    expect(actor.getSnapshot().output).toEqual({
      campaignId: 'spring-sale',
      sessionId,
      reason,
      failureKind: kind,
      endedFrom: from,
    })
    expect(emitted.find((e) => e.type === 'error')).toMatchObject({ code: reason })
    if (reason === 'node_lost') {
      expect(emitted.find((e) => e.type === 'error')).toMatchObject({
        message: expect.stringMatching(/^The node running this session was lost/),
      })
    }
    const failedEntry = actor.getSnapshot().context.history.find((h) => h.status === 'failed')
    expect(failedEntry).toMatchObject({ reason, detail: 'boom' })
  })

  it('treats a QR after ready as a logout', async () => {
    const { actor, status, qr, engineSession } = start()
    actor.send({ type: 'START' })
    engineSession().emit({ type: 'ready' })
    qr('late')
    await advance(0)
    expect(status()).toBe('cleaned')
    expect(actor.getSnapshot().context.reason).toBe('logged_out')
  })

  it('ignores events of an engine instance that is not its own', () => {
    const { actor, status } = start()
    actor.send({ type: 'START' })
    actor.send({ type: 'ENGINE.QR_RECEIVED', sessionId: 'an-older-session', qr: 'stale' })
    actor.send({ type: 'ENGINE.READY', sessionId: 'an-older-session' })
    expect(status()).toBe('initializing')
    expect(actor.getSnapshot().context.qr).toBeNull()
  })

  it('never comes back from an ended session when the engine emits after stop', async () => {
    const { actor, status, qr, engineSession } = start()
    actor.send({ type: 'START' })
    qr()
    actor.send({ type: 'CLEANUP.REQUESTED' })
    engineSession().emitAfterStop({ type: 'qr', qr: 'late' })
    engineSession().emitAfterStop({ type: 'ready' })
    await advance(0)
    expect(status()).toBe('cleaned')
    expect(actor.getSnapshot().context.qr).toBeNull()
  })

  it('reaches cleaned within its teardown bound when the engine stop never settles', async () => {
    stopBehaviour = 'never'
    const { actor, status } = start()
    actor.send({ type: 'START' })
    actor.send({ type: 'CLEANUP.REQUESTED' })
    expect(status()).toBe('cleaning')
    await advance(TIMEOUTS.teardownMs - 1)
    expect(status()).toBe('cleaning')
    await advance(1)
    expect(status()).toBe('cleaned')
    expect(actor.getSnapshot().context.teardown).toEqual({ forced: true, durationMs: -1 })
  })
})

describe('campaign machine: re-requests and cleanup', () => {
  it.each(['initializing', 'awaitingScan', 'authenticating', 'ready'] as const)(
    'joins on a re-request while %s, and replaces the session on force',
    async (state) => {
      const { actor, status, qr, engineSession } = start()
      actor.send({ type: 'START' })
      if (state !== 'initializing' && state !== 'ready') qr()
      if (state === 'authenticating') engineSession().emit({ type: 'authenticated' })
      if (state === 'ready') engineSession().emit({ type: 'ready' })
      actor.send({ type: 'SESSION.REQUESTED', force: false })
      expect(status()).toBe(state)
      expect(scripted.sessions).toHaveLength(1)
      actor.send({ type: 'SESSION.REQUESTED', force: true })
      await advance(0)
      expect(status()).toBe('cleaned')
      expect(actor.getSnapshot().context.reason).toBe('replaced')
      expect(engineSession().stopCalls).toBe(1)
    }
  )

  it('unlinks a ready session: the engine logs the device out as it stops, reason unlinked', async () => {
    const { actor, status, engineSession, emitted } = start()
    actor.send({ type: 'START' })
    engineSession().emit({ type: 'ready' })
    actor.send({ type: 'UNLINK.REQUESTED' })
    expect(status()).toBe('cleaning')
    actor.send({ type: 'UNLINK.REQUESTED' })
    await advance(0)
    expect(status()).toBe('cleaned')
    expect(engineSession().stopCalls).toBe(1)
    expect(engineSession().loggedOut).toBe(true)
    expect(actor.getSnapshot().context.reason).toBe('unlinked')
    expect(emitted.filter((e) => e.type === 'status').map((e) => e.status)).toEqual([
      'initializing',
      'ready',
      'cleaning',
      'cleaned',
    ])
  })

  it('does not log out on a plain cleanup', async () => {
    const { actor, engineSession } = start()
    actor.send({ type: 'START' })
    engineSession().emit({ type: 'ready' })
    actor.send({ type: 'CLEANUP.REQUESTED' })
    await advance(0)
    expect(engineSession().loggedOut).toBe(false)
  })

  it('cleans up from idle without ever starting an engine', async () => {
    const { actor, status } = start()
    actor.send({ type: 'CLEANUP.REQUESTED' })
    await advance(0)
    expect(status()).toBe('cleaned')
    expect(scripted.sessions).toHaveLength(0)
  })

  it('tears down once on shutdown, ignoring further cleanup and shutdown requests', async () => {
    stopBehaviour = 'never'
    const { actor, status, engineSession } = start()
    actor.send({ type: 'START' })
    actor.send({ type: 'SHUTDOWN.REQUESTED' })
    actor.send({ type: 'CLEANUP.REQUESTED' })
    actor.send({ type: 'SHUTDOWN.REQUESTED' })
    expect(status()).toBe('cleaning')
    expect(engineSession().stopCalls).toBe(1)
    expect(actor.getSnapshot().context.reason).toBe('shutdown')
    await advance(TIMEOUTS.teardownMs)
    expect(status()).toBe('cleaned')
  })

  it('records every transition with its time and reason', async () => {
    const { actor, qr } = start()
    actor.send({ type: 'START' })
    await advance(300)
    qr()
    await advance(30_000)
    const t0 = new Date('2026-01-01T12:00:00.000Z').getTime()
    expect(actor.getSnapshot().context.history).toEqual([
      { status: 'initializing', at: t0 },
      { status: 'awaitingScan', at: t0 + 300 },
      { status: 'timedOut', at: t0 + 30_300, reason: 'scan_timeout' },
      { status: 'cleaning', at: t0 + 30_300, reason: 'scan_timeout' },
      { status: 'cleaned', at: t0 + 30_300, reason: 'scan_timeout' },
    ])
  })
})

describe('campaign machine: linking with a phone number (issue 14)', () => {
  it('starts the engine with the phone number and shows its pairing code, the scan deadline from the first code', async () => {
    const { actor, status, engineSession, emitted, sessionId } = start({
      pairWithPhoneNumber: '447911123456',
    })
    actor.send({ type: 'START' })
    expect(engineSession().options.pairWithPhoneNumber).toBe('447911123456')
    await advance(300)
    engineSession().emit({ type: 'pairing_code', code: 'K7QM2XRT' })
    expect(status()).toBe('awaitingScan')
    const expiresAt = Date.now() + TIMEOUTS.scanMs
    expect(actor.getSnapshot().context.pairingCode).toEqual({ code: 'K7QM2XRT', expiresAt })
    expect(actor.getSnapshot().context.phaseDeadline).toBe(expiresAt)
    expect(emitted).toContainEqual({
      type: 'pairing_code',
      sessionId,
      code: 'K7QM2XRT',
      expiresAt,
      at: Date.now(),
    })
  })

  it('replaces the code on a renewal without moving the deadline, and times out with scan_timeout', async () => {
    const { actor, status, engineSession, emitted } = start({ pairWithPhoneNumber: '447911123456' })
    actor.send({ type: 'START' })
    engineSession().emit({ type: 'pairing_code', code: 'AAAA1111' })
    const deadline = Date.now() + TIMEOUTS.scanMs
    await advance(20_000)
    engineSession().emit({ type: 'pairing_code', code: 'BBBB2222' })
    expect(actor.getSnapshot().context.pairingCode).toEqual({
      code: 'BBBB2222',
      expiresAt: deadline,
    })
    await advance(TIMEOUTS.scanMs - 20_000 - 1)
    expect(status()).toBe('awaitingScan')
    await advance(1)
    expect(actor.getSnapshot().context.reason).toBe('scan_timeout')
    expect(actor.getSnapshot().context.pairingCode).toBeNull()
    expect(emitted).toContainEqual(
      expect.objectContaining({
        type: 'error',
        code: 'scan_timeout',
        message:
          'The pairing code was not entered on the phone within 30 s; the session was cleaned up.',
      })
    )
  })

  it('forgets the code once the phone took it', () => {
    const { actor, status, engineSession } = start({ pairWithPhoneNumber: '447911123456' })
    actor.send({ type: 'START' })
    engineSession().emit({ type: 'pairing_code', code: 'AAAA1111' })
    engineSession().emit({ type: 'authenticated' })
    expect(status()).toBe('authenticating')
    expect(actor.getSnapshot().context.pairingCode).toBeNull()
  })

  it('starts a QR session without a phone number', () => {
    const { actor, engineSession } = start()
    actor.send({ type: 'START' })
    expect(engineSession().options.pairWithPhoneNumber).toBeUndefined()
  })
})

describe('campaign machine: liveness (issue 15)', () => {
  /** A session made ready at once; `offset` is when its first probe is due. */
  function readySession() {
    const session = start()
    session.actor.send({ type: 'START' })
    session.engineSession().emit({ type: 'ready' })
    const offset = probeOffsetMs(session.sessionId, LIVENESS.intervalMs)
    return { ...session, offset, context: () => session.actor.getSnapshot().context }
  }

  it('probes a ready session at its offset, then every interval, and records lastSeenAlive', async () => {
    const { engineSession, offset, context, status, emitted } = readySession()
    const readyAt = Date.now()
    expect(context().lastSeenAliveAt).toBe(readyAt)
    await advance(offset - 1)
    expect(engineSession().probeCalls).toBe(0)
    await advance(1)
    expect(engineSession().probeCalls).toBe(1)
    expect(context().lastSeenAliveAt).toBe(readyAt + offset)
    await advance(LIVENESS.intervalMs - 1)
    expect(engineSession().probeCalls).toBe(1)
    await advance(1)
    expect(engineSession().probeCalls).toBe(2)
    expect(context().lastSeenAliveAt).toBe(readyAt + offset + LIVENESS.intervalMs)
    expect(status()).toBe('ready')
    expect(emitted.filter((e) => e.type === 'probe')).toHaveLength(2)
    // Probes are counted, never reported as a status.
    expect(emitted.filter((e) => e.type === 'status').map((e) => e.status)).toEqual([
      'initializing',
      'ready',
    ])
  })

  it('never probes before ready', async () => {
    const { actor, qr, engineSession } = start()
    actor.send({ type: 'START' })
    qr()
    await advance(TIMEOUTS.scanMs - 1)
    expect(engineSession().probeCalls).toBe(0)
  })

  it('ends a hung page unresponsive after LIVENESS_MISSES timeouts, through cleaning', async () => {
    const { actor, engineSession, offset, status, emitted, sessionId } = readySession()
    engineSession().probeAnswer = 'hang'
    await advance(offset + LIVENESS.timeoutMs - 1)
    expect(actor.getSnapshot().context.probeMisses).toBe(0)
    await advance(1)
    expect(actor.getSnapshot().context.probeMisses).toBe(1)
    expect(status()).toBe('ready')
    await advance(LIVENESS.intervalMs - 1)
    expect(status()).toBe('ready')
    await advance(1)
    expect(status()).toBe('cleaned')
    expect(engineSession().stopCalls).toBe(1)
    expect(actor.getSnapshot().output).toEqual({
      campaignId: 'spring-sale',
      sessionId,
      reason: 'unresponsive',
      failureKind: null,
      endedFrom: 'ready',
    })
    expect(emitted.filter((e) => e.type === 'status').map((e) => e.status)).toEqual([
      'initializing',
      'ready',
      'failed',
      'cleaning',
      'cleaned',
    ])
    const failed = actor.getSnapshot().context.history.find((h) => h.status === 'failed')
    expect(failed).toMatchObject({
      reason: 'unresponsive',
      detail: 'the WhatsApp page did not answer within 10000 ms (2 liveness probes in a row)',
    })
    expect(emitted.find((e) => e.type === 'error')).toMatchObject({ code: 'unresponsive' })
  })

  it('ends a session whose WhatsApp reports another state than CONNECTED unresponsive', async () => {
    const { actor, engineSession, offset, status } = readySession()
    engineSession().probeAnswer = 'TIMEOUT'
    await advance(offset)
    expect(status()).toBe('ready')
    await advance(LIVENESS.intervalMs)
    expect(status()).toBe('cleaned')
    expect(actor.getSnapshot().context.history.find((h) => h.status === 'failed')).toMatchObject({
      reason: 'unresponsive',
      detail: 'WhatsApp reports the connection state TIMEOUT (2 liveness probes in a row)',
    })
  })

  it('counts a probe that fails (the page is gone) as a miss, with what it said', async () => {
    const { actor, engineSession, offset } = readySession()
    engineSession().probeAnswer = 'throw'
    await advance(offset)
    expect(actor.getSnapshot().context).toMatchObject({
      probeMisses: 1,
      probeMissDetail: 'the probe failed: Target closed',
    })
  })

  it('stays ready when WhatsApp recovers between misses', async () => {
    const { engineSession, offset, status, context } = readySession()
    engineSession().probeAnswer = 'hang'
    await advance(offset + LIVENESS.timeoutMs)
    expect(context().probeMisses).toBe(1)
    engineSession().probeAnswer = 'CONNECTED'
    await advance(LIVENESS.intervalMs - LIVENESS.timeoutMs)
    expect(context().probeMisses).toBe(0)
    engineSession().probeAnswer = 'TIMEOUT'
    await advance(LIVENESS.intervalMs)
    expect(context().probeMisses).toBe(1)
    expect(status()).toBe('ready')
  })

  it('ignores a late answer to an earlier probe', async () => {
    const { actor, engineSession, offset, sessionId, context } = readySession()
    engineSession().probeAnswer = 'hang'
    await advance(offset + LIVENESS.timeoutMs + LIVENESS.intervalMs - LIVENESS.timeoutMs)
    // Probe 2 is in flight; the first one's answer comes now.
    expect(context().probes).toBe(2)
    const seen = context().lastSeenAliveAt
    actor.send({ type: 'ENGINE.ALIVE', sessionId, probe: 1 })
    actor.send({ type: 'ENGINE.PROBE_FAILED', sessionId, probe: 1, detail: 'late' })
    expect(context()).toMatchObject({ probeMisses: 1, lastSeenAliveAt: seen })
    actor.send({ type: 'ENGINE.ALIVE', sessionId, probe: 2 })
    expect(context()).toMatchObject({ probeMisses: 0, lastSeenAliveAt: Date.now() })
  })

  it('stops probing with the session: no probe and no timer is left after cleanup', async () => {
    const { actor, engineSession, offset, status } = readySession()
    await advance(offset)
    expect(engineSession().probeCalls).toBe(1)
    actor.send({ type: 'CLEANUP.REQUESTED' })
    await advance(0)
    expect(status()).toBe('cleaned')
    expect(vi.getTimerCount()).toBe(0)
    await advance(10 * LIVENESS.intervalMs)
    expect(engineSession().probeCalls).toBe(1)
  })

  it('spreads the first probes of sessions that became ready together over the interval', () => {
    const buckets = new Array<number>(10).fill(0)
    for (let i = 0; i < 1_000; i++) {
      const offset = probeOffsetMs(crypto.randomUUID(), LIVENESS.intervalMs)
      expect(offset).toBeGreaterThanOrEqual(0)
      expect(offset).toBeLessThan(LIVENESS.intervalMs)
      buckets[Math.floor(offset / (LIVENESS.intervalMs / 10))]!++
    }
    for (const count of buckets) expect(count).toBeGreaterThan(50)
  })
})

describe('campaign machine: coverage', () => {
  /** Every transition of the machine, from xstate/graph plus the eventless ones it omits. */
  function allTransitions(): Array<{ key: string; transition: unknown }> {
    const found: Array<{ key: string; transition: unknown }> = []
    const visit = (node: DirectedGraphNode) => {
      for (const edge of node.edges) {
        found.push({
          key: `${edge.source.id} --${edge.label.text}--> ${edge.target.id}`,
          transition: edge.transition,
        })
      }
      const stateNode: AnyStateNode = node.stateNode
      stateNode.always?.forEach((transition) => {
        const target = transition.target?.map((t) => t.id).join(',') ?? stateNode.id
        found.push({ key: `${stateNode.id} --(always)--> ${target}`, transition })
      })
      node.children.forEach(visit)
    }
    visit(toDirectedGraph(machine))
    return found
  }

  afterAll(() => {
    // Sanity: the list is not empty and includes eventless transitions.
    expect(allTransitions().some((t) => t.key.includes('(always)'))).toBe(true)
  })

  it('takes every transition of the campaign machine in the tests above', () => {
    const never = allTransitions()
      .filter(({ transition }) => !taken.has(transition))
      .map(({ key }) => key)
    expect(never).toEqual([])
    expect(allTransitions().length).toBeGreaterThan(25)
  })
})
