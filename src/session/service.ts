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
  RemoteSessionEvent,
  SessionEvent,
  SessionService,
  StartRequest,
  StartResult,
  Subscription,
  UnlinkResult,
} from './api.ts'
import { Durability } from './durability.ts'
import { DEFAULT_LIVENESS, type LivenessSettings } from './liveness.ts'
import { RestoreQueue, type RestoreLaunch } from './restore.ts'
import type { SessionStore, StoredCampaign } from './sessionStore.ts'

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
  /** How ready sessions are probed (`LIVENESS_*`); see liveness.ts. */
  liveness?: Partial<LivenessSettings>
  /** Ended sessions remembered for status queries: at most this many, for at most this long. */
  maxTombstones?: number
  tombstoneTtlMs?: number
  newSessionId?: () => string
  random?: () => number
  /** This node's `NODE_ID` in a cluster: the `node` of the sessions it runs. Absent outside one. */
  nodeId?: string
  /** Sessions of other nodes shown at most at once (default 100,000; the oldest dropped past it). */
  maxRemoteSessions?: number
}

/** A service with a durable store: see `openSessionService`. */
export interface DurableSessionOptions extends SessionServiceOptions {
  store: SessionStore
  /** `RESTORE_CONCURRENCY`: restored sessions launching at once. */
  restoreConcurrency: number
  /**
   * Other nodes share the store (a cluster): flags are always written, and the restore of linked
   * campaigns is the cluster's (their leases say which node takes each).
   */
  sharedStore?: boolean
}

/** How long a client waits before asking again when the store did not answer a claim. */
const STORE_RETRY_AFTER_SECONDS = 5

export interface SupervisedSessionService<
  Answer extends StartResult | Promise<StartResult> = StartResult,
> extends SessionService {
  requestSession(request: StartRequest): Answer
  /**
   * Attaches an XState inspection observer to the supervisor and every campaign actor (each
   * campaign actor is the root of its own small system); it first gets an `@xstate.actor` and an
   * `@xstate.snapshot` for every live campaign actor. Costs nothing while nobody is attached.
   */
  inspect(observer: (event: InspectionEvent) => void): Subscription
  /**
   * Every event of the sessions this node runs, without replay (metrics, logs, the store,
   * webhooks, the publishing to other nodes); never an event applied by `applyRemote`.
   */
  observe(listener: (event: SessionEvent) => void): Subscription
  /**
   * Shows a session that runs on another node, as that node published its event: views, the list
   * and subscribers (with this node's `seq`) answer for it as for this node's own sessions.
   * Returns the event as told here, undefined when it was ignored (stale).
   */
  applyRemote(remote: RemoteSessionEvent): SessionEvent | undefined
  /** Forgets the sessions that run on `node` (it was declared dead; failover tells their end). */
  dropRemoteOf(node: string): void
  /**
   * Tears the campaign's sessions down as a stopping node does (reason `shutdown`), without
   * changing what the campaign wants: a cluster node hands it over to another node.
   */
  handOver(campaignId: string): Promise<CleanupResult>
  /**
   * Sessions of other nodes shown now, and how many were dropped because `maxRemoteSessions` were
   * shown already (for metrics; `stats()` counts only this node's sessions).
   */
  remoteSessionCounts(): { live: number; dropped: number }
  /** Engine sessions started and not yet stopped (tests use it to prove nothing leaks). */
  liveEngineSessions(): string[]
  readonly supervisor: ReturnType<typeof createActor<SupervisorMachine>>
}

export interface DurableSessionService extends SupervisedSessionService<Promise<StartResult>> {
  /**
   * Starts the restore of the campaigns that were linked and wanted `running` (once; the
   * composition root calls it when the server listens).
   */
  beginRestore(): void
  /**
   * Reads the campaign from the store and takes it as it is there (owner, flags, proxy): before
   * this node runs a campaign another node ran. Undefined when the store does not know it.
   */
  reload(campaignId: string): Promise<StoredCampaign | undefined>
  /** Linked and wanted `running`: it should run somewhere. */
  shouldRun(campaignId: string): boolean
}

/** Margin the machine's own teardown deadline leaves above the engine's bounded stop. */
const TEARDOWN_MARGIN_MS = 1_000

/** The session service in memory: everything it knows is gone with the process. */
export function createSessionService(options: SessionServiceOptions): SupervisedSessionService {
  return buildService(options)
}

/**
 * The session service on a durable store: loads every campaign's owner and last session first,
 * commits a new campaign's owner before answering, writes status changes behind, and restores the
 * linked campaigns (`beginRestore`).
 *
 * @example
 * const sessions = await openSessionService({ engine, timeouts, maxSessions: 100, store, restoreConcurrency: 2 })
 * sessions.beginRestore()
 */
export async function openSessionService(
  options: DurableSessionOptions
): Promise<DurableSessionService> {
  const { store, restoreConcurrency } = options
  let durability: Durability | undefined
  const base = buildService(options, (registry, now) => {
    durability = new Durability({
      store,
      registry,
      timeouts: options.timeouts,
      now,
      sharedStore: options.sharedStore === true,
    })
    return durability
  })
  const logger = options.logger ?? silentLogger
  const durable = durability!
  const toRestore = await durable.load()

  const launch = (campaignId: string): RestoreLaunch => {
    if (!base.stats().accepting) return { stop: true }
    if (!durable.isLinked(campaignId) || durable.wanted(campaignId) !== 'running') {
      return { skipped: true }
    }
    const owner = base.ownerOf(campaignId)
    if (owner === undefined || base.getCampaign(campaignId).hasActiveSession) {
      return { skipped: true }
    }
    const result = base.requestSession({ campaignId, caller: { userId: owner, admin: false } })
    if (!result.ok) return result.error === 'forbidden' ? { skipped: true } : { stop: true }
    return result.outcome === 'started' ? { started: result.view.sessionId! } : { skipped: true }
  }
  // In a cluster the restore is the failover's: whichever node takes each campaign's lease.
  const queue = new RestoreQueue(options.sharedStore ? [] : toRestore, {
    concurrency: restoreConcurrency,
    launch,
    onDone: (progress) => {
      if (progress.total > 0) logger.info({ ...progress }, 'restore of linked campaigns finished')
    },
  })
  base.observe((event) => {
    if (!event.sessionId) return
    if (event.type === 'qr' || event.type === 'ready') queue.settled(event.sessionId)
    else if (event.type === 'status' && !event.hasActiveSession) queue.settled(event.sessionId)
  })
  let restoreBegun = false

  return {
    ...base,
    async requestSession(request) {
      const { campaignId, caller } = request
      if (!base.stats().accepting) return { ok: false, error: 'shutting_down' }
      if (!durable.isKnown(campaignId)) {
        try {
          await durable.claim(campaignId, caller.userId)
        } catch (error) {
          logger.error({ err: error, campaignId }, 'the store could not record the owner')
          return {
            ok: false,
            error: 'store_unavailable',
            retryAfterSeconds: STORE_RETRY_AFTER_SECONDS,
          }
        }
      }
      const taken = queue.take(campaignId)
      const result = base.requestSession(request)
      if (result.ok) {
        durable.setWanted(campaignId, 'running')
        if (request.proxy !== undefined) durable.setProxy(campaignId, request.proxy)
        if (taken && result.outcome === 'started') queue.hold(result.view.sessionId!)
      }
      return result
    },
    cleanupSession(campaignId) {
      durable.setWanted(campaignId, 'stopped')
      return base.cleanupSession(campaignId)
    },
    async unlinkCampaign(campaignId) {
      durable.setWanted(campaignId, 'stopped')
      const result = await base.unlinkCampaign(campaignId)
      if (result.loginDeleted) durable.setLinked(campaignId, false)
      return result
    },
    setProxy(campaignId, proxy) {
      const set = base.setProxy(campaignId, proxy)
      if (set) durable.setProxy(campaignId, proxy)
      return set
    },
    stats: () => ({ ...base.stats(), restore: options.sharedStore ? null : queue.progress() }),
    beginRestore() {
      if (restoreBegun || options.sharedStore) return
      restoreBegun = true
      queue.pump()
    },
    async reload(campaignId) {
      const stored = await store.getCampaign(campaignId)
      if (stored) durable.adopt(stored)
      return stored
    },
    shouldRun: (campaignId) =>
      durable.isLinked(campaignId) && durable.wanted(campaignId) === 'running',
    shutdown() {
      queue.stop()
      return base.shutdown()
    },
  }
}

/** `withDurability` is called once, with the table, when a durable store is given. */
function buildService(
  options: SessionServiceOptions,
  withDurability?: (registry: CampaignTable, now: () => number) => Durability
): SupervisedSessionService {
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
  const liveness = { ...DEFAULT_LIVENESS, ...options.liveness }
  validateTimeouts(liveness, 'liveness', 1)
  const engines = createEngineControl(options.engine, {
    proxyOf: (campaignId) => registry.proxyOf(campaignId),
  })
  const now = () => clock.now()
  const registry = new CampaignTable({
    machine: createCampaignMachine({ engines, now }),
    timeouts: {
      initMs: timeouts.initMs,
      scanMs: timeouts.scanMs,
      authMs: timeouts.authMs,
      teardownMs: timeouts.destroyMs + timeouts.killMs + TEARDOWN_MARGIN_MS,
    },
    liveness,
    clock,
    now,
    maxTombstones,
    tombstoneTtlMs,
    onListenerError: (error) => logger.error({ err: error }, 'a session subscriber failed'),
    ...(options.nodeId !== undefined ? { nodeId: options.nodeId } : {}),
    ...(options.maxRemoteSessions !== undefined
      ? { maxRemoteSessions: options.maxRemoteSessions }
      : {}),
  })
  const durability = withDurability?.(registry, now)
  if (durability) registry.observe(durability.record)
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
        'session died while ready (crashed or unresponsive); restarting with saved auth'
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

  function cleanup(campaignId: string, logout: boolean, handover = false): Promise<CleanupResult> {
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
      logout,
      handover,
      reply: (answer) => (result = answer),
    })
    if (!result)
      throw new Error('cleanupSession was called re-entrantly from within the supervisor')
    return result
  }

  function isAccepting(): boolean {
    const snapshot = supervisor.getSnapshot()
    return snapshot.status === 'active' && snapshot.context.accepting
  }

  return {
    supervisor,
    requestSession({ campaignId, caller, force = false, pairWithPhoneNumber, proxy }) {
      if (!isAccepting()) return { ok: false, error: 'shutting_down' }
      let result: StartResult | undefined
      supervisor.send({
        type: 'SESSION.REQUESTED',
        campaignId,
        caller,
        force,
        ...(pairWithPhoneNumber !== undefined ? { pairWithPhoneNumber } : {}),
        ...(proxy !== undefined ? { proxy } : {}),
        reply: (answer) => (result = answer),
      })
      // The supervisor processes an event sent from outside synchronously; no answer means the
      // call came from inside its own processing, which the edges never do.
      if (!result)
        throw new Error('requestSession was called re-entrantly from within the supervisor')
      return result
    },
    cleanupSession: (campaignId) => cleanup(campaignId, false),
    handOver: (campaignId) => cleanup(campaignId, false, true),
    async unlinkCampaign(campaignId): Promise<UnlinkResult> {
      const result = await cleanup(campaignId, true)
      // A session requested meanwhile runs on the saved login: it is left alone, and linked.
      if (registry.current(campaignId)) {
        logger.warn({ campaignId }, 'unlink: a new session started meanwhile; its login is kept')
        return { ...result, loginDeleted: false }
      }
      await options.engine.forgetLogin?.(campaignId)
      return { ...result, loginDeleted: true }
    },
    getCampaign: (campaignId) => registry.view(campaignId),
    ownerOf: (campaignId) => registry.ownerOf(campaignId),
    proxyOf: (campaignId) => registry.proxyOf(campaignId),
    setProxy: (campaignId, proxy) => registry.setProxy(campaignId, proxy),
    listCampaigns({ limit = Infinity, ...query } = {}) {
      const page = registry.listCampaigns({ ...query, limit })
      return { campaigns: page.entries, next: page.next }
    },
    subscribe: (target, listener) => registry.subscribe(target, listener),
    observe: (listener) => registry.observe(listener),
    applyRemote: (remote) => registry.applyRemote(remote),
    dropRemoteOf: (node) => registry.dropRemoteOf(node),
    remoteSessionCounts: () => registry.remoteCounts,
    stats: () => ({
      accepting: isAccepting(),
      maxSessions,
      campaigns: registry.campaignCount,
      ...registry.stats(),
      restore: null,
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

function validateTimeouts(
  timeouts: SessionTimeouts | LivenessSettings,
  what = 'timeouts',
  min = 0
): void {
  for (const [name, value] of Object.entries(timeouts)) {
    // A delay that is not a finite number would make XState fire the transition at once.
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
      throw new TypeError(
        `${what}.${name} must be a finite number of at least ${min} (got ${value})`
      )
    }
  }
}
