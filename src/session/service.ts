/**
 * `createSessionService`: the supervisor actor and its campaign actors behind the typed
 * `SessionService` API that the HTTP and WebSocket layers use.
 *
 * @example
 * ```ts
 * const engine = createSimulatedEngine()
 * const sessions = createSessionService({
 *   engine,
 *   timeouts: { initMs: 30_000, scanMs: 30_000, authMs: 120_000, destroyMs: 10_000, killMs: 5_000 },
 *   maxSessions: 100,
 * })
 * const answer = sessions.requestSession({ campaignId: 'spring-sale', caller: { userId: 'alice', admin: false } })
 * ```
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import { createActor, type InspectionEvent } from 'xstate'
import { systemClock, type Clock } from '../clock.ts'
import type { Engine } from '../engines/engine.ts'
import { silentLogger, type Logger } from '../logger.ts'
import { sessionTag } from '../sessionTag.ts'
import { createCampaignMachine } from './campaignMachine.ts'
import { createEngineControl } from './engineControl.ts'
import { CampaignTable } from './campaignTable.ts'
import {
  createSupervisorMachine,
  DEFAULT_RESTART_POLICY,
  type RestartPolicy,
  type SupervisorMachine,
} from './supervisorMachine.ts'
import type {
  CleanupResult,
  SessionEvent,
  SessionService,
  StartResult,
  Subscription,
} from './api.ts'

export interface SessionTimeouts {
  initMs: number
  scanMs: number
  authMs: number
  /** Graceful engine teardown before the engine's processes are killed. */
  destroyMs: number
  /** The forced phase of a teardown. */
  killMs: number
}

export interface SessionServiceOptions {
  engine: Engine
  timeouts: SessionTimeouts
  maxSessions: number
  clock?: Clock
  logger?: Logger
  restartPolicy?: Partial<RestartPolicy>
  /** Ended sessions remembered for status queries: at most this many, for at most this long. */
  maxTombstones?: number
  tombstoneTtlMs?: number
  newSessionId?: () => string
  random?: () => number
}

export interface SupervisedSessionService extends SessionService {
  /**
   * Attaches an XState inspection observer to the supervisor and every campaign actor (each
   * campaign actor is the root of its own small system); it first gets an `@xstate.actor` and an
   * `@xstate.snapshot` for every live campaign actor. Costs nothing while nobody is attached.
   */
  inspect(observer: (event: InspectionEvent) => void): Subscription
  /** Every event of every campaign, without replay (metrics, logs). */
  observe(listener: (event: SessionEvent) => void): Subscription
  /** Engine sessions started and not yet stopped (tests use it to prove nothing leaks). */
  liveEngineSessions(): string[]
  readonly supervisor: ReturnType<typeof createActor<SupervisorMachine>>
}

/** Margin the machine's own teardown deadline leaves above the engine's bounded stop. */
const TEARDOWN_MARGIN_MS = 1_000

export function createSessionService(options: SessionServiceOptions): SupervisedSessionService {
  const {
    timeouts,
    maxSessions,
    clock = systemClock,
    logger = silentLogger,
    maxTombstones = 10_000,
    tombstoneTtlMs = 24 * 60 * 60_000,
    newSessionId = randomUUID,
    random = Math.random,
  } = options
  validateTimeouts(timeouts)
  const engines = createEngineControl(options.engine)
  const now = () => clock.now()
  const registry = new CampaignTable({
    machine: createCampaignMachine({ engines, now }),
    timeouts: {
      initMs: timeouts.initMs,
      scanMs: timeouts.scanMs,
      authMs: timeouts.authMs,
      teardownMs: timeouts.destroyMs + timeouts.killMs + TEARDOWN_MARGIN_MS,
    },
    clock,
    now,
    maxTombstones,
    tombstoneTtlMs,
    onListenerError: (error) => logger.error({ err: error }, 'a session subscriber failed'),
  })
  const machine = createSupervisorMachine({
    registry,
    maxSessions,
    retryAfterSeconds: Math.max(1, Math.ceil((timeouts.destroyMs + timeouts.killMs) / 1000)),
    restartPolicy: { ...DEFAULT_RESTART_POLICY, ...options.restartPolicy },
    now,
    random,
    newSessionId,
    stopEngineOf: (sessionId) => engines.forceStop(sessionId),
    onError: (error, { sessionId, ...context }) =>
      logger.error(
        {
          err: error,
          ...context,
          session: typeof sessionId === 'string' ? sessionTag(sessionId) : undefined,
        },
        'supervisor error'
      ),
    onRestart: (campaignId, delayMs) =>
      logger.warn(
        { campaignId, delayMs },
        'engine crashed while ready; restarting with saved auth'
      ),
  })
  const supervisor = createActor(machine, { clock })
  const stopped = new Promise<void>((resolve) => {
    supervisor.subscribe({
      complete: () => {
        registry.close()
        resolve()
      },
      error: (error) => {
        // Unreachable by design (every action is total); logged so it can never pass silently.
        logger.fatal({ err: error }, 'the supervisor failed')
        resolve()
      },
    })
  })
  supervisor.start()

  registry.observe((event) => {
    if (event.type === 'status') {
      logger.info(
        {
          campaignId: event.campaignId,
          session: sessionTag(event.sessionId),
          status: event.status,
          reason: event.reason,
        },
        'session status'
      )
    }
  })

  function isAccepting(): boolean {
    const snapshot = supervisor.getSnapshot()
    return snapshot.status === 'active' && snapshot.context.accepting
  }

  return {
    supervisor,
    requestSession({ campaignId, caller, force = false }) {
      if (!isAccepting()) return { ok: false, error: 'shutting_down' }
      let result: StartResult | undefined
      supervisor.send({
        type: 'SESSION.REQUESTED',
        campaignId,
        caller,
        force,
        reply: (answer) => (result = answer),
      })
      // The supervisor processes an event sent from outside synchronously; no answer means the
      // call came from inside its own processing, which the edges never do.
      if (!result)
        throw new Error('requestSession was called re-entrantly from within the supervisor')
      return result
    },
    cleanupSession(campaignId) {
      if (supervisor.getSnapshot().status !== 'active') {
        return Promise.resolve<CleanupResult>({
          campaignId,
          sessionId: registry.lastEnded(campaignId)?.sessionId ?? null,
          hadSession: false,
        })
      }
      let result: Promise<CleanupResult> | undefined
      supervisor.send({
        type: 'CLEANUP.REQUESTED',
        campaignId,
        reply: (answer) => (result = answer),
      })
      if (!result)
        throw new Error('cleanupSession was called re-entrantly from within the supervisor')
      return result
    },
    getCampaign: (campaignId) => registry.view(campaignId),
    ownerOf: (campaignId) => registry.ownerOf(campaignId),
    listCampaigns({ limit = Infinity, ...query } = {}) {
      const page = registry.listCampaigns({ ...query, limit })
      return { campaigns: page.entries, next: page.next }
    },
    subscribe: (target, listener) => registry.subscribe(target, listener),
    observe: (listener) => registry.observe(listener),
    stats: () => ({
      accepting: isAccepting(),
      maxSessions,
      campaigns: registry.campaignCount,
      ...registry.stats(),
    }),
    inspect(observer) {
      const onSupervisor = supervisor.system.inspect(observer)
      const onSessions = registry.inspect({ next: observer })
      return {
        unsubscribe() {
          onSupervisor.unsubscribe()
          onSessions.unsubscribe()
        },
      }
    },
    liveEngineSessions: () => engines.liveSessionIds(),
    shutdown() {
      if (supervisor.getSnapshot().status === 'active')
        supervisor.send({ type: 'SHUTDOWN.REQUESTED' })
      return stopped
    },
  }
}

function validateTimeouts(timeouts: SessionTimeouts): void {
  for (const [name, value] of Object.entries(timeouts)) {
    // A delay that is not a finite number would make XState fire the transition at once.
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new TypeError(
        `timeouts.${name} must be a finite, non-negative number of ms (got ${value})`
      )
    }
  }
}
