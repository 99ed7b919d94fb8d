/**
 * The supervisor machine: starts and stops campaign actors on request, one live session per
 * campaign, within `maxSessions`; restarts a ready session whose engine crashed or stopped
 * answering the liveness probe (exponential
 * backoff with jitter, a bounded budget); shuts everything down gracefully.
 *
 *   running ──SHUTDOWN.REQUESTED──▶ shuttingDown ──(no live session)──▶ stopped (final)
 *
 * Its campaign actors are kept in a `CampaignTable` rather than `snapshot.children` (see
 * there for why). Every action is total: an error is logged and the request answered, never
 * thrown, because a throwing action would stop the supervisor and orphan every session.
 *
 * @module
 */
import { assign, enqueueActions, setup } from 'xstate'
import type { Caller, CleanupResult, StartResult } from './api.ts'
import type { CampaignOutput } from './campaignMachine.ts'
import { statusOf } from './campaignMachine.ts'
import { pruneRestarts, shouldPrune, spendRestart, type RestartPolicy } from './restartPolicy.ts'
import type { CampaignTable, SessionSettings } from './campaignTable.ts'
import type { ProxySettings } from '../proxy.ts'

export { DEFAULT_RESTART_POLICY, type RestartPolicy } from './restartPolicy.ts'

export interface SupervisorDeps {
  registry: CampaignTable
  maxSessions: number
  /** Seconds a client is told to wait when at capacity. */
  retryAfterSeconds: number
  restartPolicy: RestartPolicy
  now: () => number
  random: () => number
  newSessionId: () => string
  /** Stops the engine of a session whose actor failed with a bug (its own cleanup did not run). */
  stopEngineOf: (sessionId: string) => void
  onError: (error: unknown, context: Record<string, unknown>) => void
  onRestart?: (campaignId: string, delayMs: number) => void
}

export interface SupervisorContext {
  accepting: boolean
  /** Live sessions (started and not yet cleaned). */
  live: number
  started: number
  ended: number
  restarts: number
  /**
   * Restart times of the campaigns restarted within the restart window (see restartPolicy.ts),
   * and its size when last pruned. The Maps of the context are updated in place, in the actions
   * that own them: copying one per restart would make a mass crash O(n²).
   */
  recentRestarts: Map<string, readonly number[]>
  prunedSize: number
  /** Campaigns with a restart scheduled, and their owner (kept even if the campaign is forgotten). */
  pendingRestarts: Map<string, string>
}

/**
 * Requests carry their `reply`. Why not the answer in the context, read after a synchronous
 * `send`: a `send` made while the supervisor is processing (a subscriber reacting to an event it
 * relays, or a campaign actor ending) is queued, not processed, so the answer would not be there
 * yet; and an emitted answer needs a table of pending requests keyed by id, a second way to the
 * same place. The reply is called exactly once, by the named action that decided.
 */
export type SupervisorEvent =
  | {
      type: 'SESSION.REQUESTED'
      campaignId: string
      caller: Caller
      force: boolean
      /** Link by a pairing code for this phone number instead of a QR. */
      pairWithPhoneNumber?: string
      /** The campaign's proxy from now on (null: none); unchanged when absent. */
      proxy?: ProxySettings | null
      reply: (result: StartResult) => void
    }
  | {
      type: 'CLEANUP.REQUESTED'
      campaignId: string
      /** Unlink: each session's engine logs the device out of WhatsApp as it stops. */
      logout?: boolean
      /**
       * A cluster node hands the campaign over to another node as it stops: its sessions end as
       * they do at a shutdown (reason `shutdown`), not as a cleanup someone asked for.
       */
      handover?: boolean
      reply: (result: Promise<CleanupResult>) => void
    }
  | { type: 'RESTART.DUE'; campaignId: string }
  | { type: 'SHUTDOWN.REQUESTED' }
  | { type: 'SESSION.ENDED'; sessionId: string; output: CampaignOutput }
  | { type: 'SESSION.FAILED'; sessionId: string; error: unknown }

const restartDelayId = (campaignId: string) => `restart:${campaignId}`

export function createSupervisorMachine(deps: SupervisorDeps) {
  const { registry } = deps

  function safely<T>(
    what: string,
    fallback: T,
    fn: () => T,
    context: Record<string, unknown> = {}
  ): T {
    try {
      return fn()
    } catch (error) {
      deps.onError(error, { action: what, ...context })
      return fallback
    }
  }

  function startSession(
    self: Parameters<CampaignTable['startSession']>[0],
    campaignId: string,
    owner: string,
    settings: SessionSettings = {}
  ) {
    return registry.startSession(self, campaignId, deps.newSessionId(), owner, settings)
  }

  type SessionRequest = Extract<SupervisorEvent, { type: 'SESSION.REQUESTED' }>

  /** The campaign's current session, as a request sees it. */
  function currentOf(event: SupervisorEvent) {
    if (event.type !== 'SESSION.REQUESTED') return undefined
    const current = registry.current(event.campaignId)
    if (!current) return undefined
    const snapshot = current.actor.getSnapshot()
    return { session: current, status: statusOf(snapshot.value), live: !snapshot.hasTag('ended') }
  }

  /** Answers the request with what `answer` decides; a bug answers `shutting_down`, logged. */
  function reply(action: string, event: SessionRequest, answer: () => StartResult): StartResult {
    const result = safely<StartResult>(action, { ok: false, error: 'shutting_down' }, answer, {
      campaignId: event.campaignId,
    })
    safely('reply', undefined, () => event.reply(result))
    return result
  }

  return setup({
    types: {
      context: {} as SupervisorContext,
      events: {} as SupervisorEvent,
    },
    guards: {
      hasNoLiveSession: () => registry.liveCount === 0,
      isNotOwner: ({ event }) => {
        if (event.type !== 'SESSION.REQUESTED') return false
        const owner = registry.ownerOf(event.campaignId)
        return owner !== undefined && owner !== event.caller.userId && !event.caller.admin
      },
      isReady: ({ event }) =>
        event.type === 'SESSION.REQUESTED' && !event.force && currentOf(event)?.status === 'ready',
      isJoinable: ({ event }) =>
        event.type === 'SESSION.REQUESTED' && !event.force && currentOf(event)?.live === true,
      linksOtherwise: ({ event }) => {
        if (event.type !== 'SESSION.REQUESTED' || event.pairWithPhoneNumber === undefined) {
          return false
        }
        const current = currentOf(event)
        return (
          current?.live === true &&
          current.session.actor.getSnapshot().context.pairWithPhoneNumber !==
            event.pairWithPhoneNumber
        )
      },
      hasSessionToReplace: ({ event }) => currentOf(event) !== undefined,
      isAtCapacity: () => registry.liveCount >= deps.maxSessions,
      hasLiveSessions: ({ event }) =>
        event.type === 'CLEANUP.REQUESTED' && registry.sessionsOf(event.campaignId).length > 0,
      isRestartStillWanted: ({ context, event }) =>
        event.type === 'RESTART.DUE' &&
        context.pendingRestarts.has(event.campaignId) &&
        !registry.current(event.campaignId) &&
        registry.liveCount < deps.maxSessions,
      diedWhileReady: ({ event }) =>
        event.type === 'SESSION.ENDED' &&
        event.output.endedFrom === 'ready' &&
        (event.output.failureKind === 'crashed' || event.output.reason === 'unresponsive'),
    },
    actions: {
      answerForbidden: ({ event }) => {
        if (event.type !== 'SESSION.REQUESTED') return
        reply('answerForbidden', event, () => ({ ok: false, error: 'forbidden' }))
      },
      answerAtCapacity: ({ event }) => {
        if (event.type !== 'SESSION.REQUESTED') return
        reply('answerAtCapacity', event, () => ({
          ok: false,
          error: 'at_capacity',
          retryAfterSeconds: deps.retryAfterSeconds,
        }))
      },
      // enqueueActions, not a plain function, for every action that sends to a campaign actor at
      // once: that actor then runs its own actions inside ours, and XState flags built-in actions
      // (assign, emit) run inside a custom action's execution as misuse.
      joinSession: enqueueActions(({ event }) => {
        if (event.type !== 'SESSION.REQUESTED') return
        reply('joinSession', event, () => {
          const { session, status } = currentOf(event)!
          // Only past every refusal: a refused request keeps nothing. A proxy applies from the
          // campaign's next session on: the live one keeps its connection.
          registry.touch(event.campaignId)
          if (event.proxy !== undefined) registry.setProxy(event.campaignId, event.proxy)
          session.actor.send({ type: 'SESSION.REQUESTED', force: false })
          return {
            ok: true,
            outcome: status === 'ready' ? 'ready' : 'joined',
            view: registry.view(event.campaignId),
          }
        })
      }),
      startSession: enqueueActions(({ context, event, self, enqueue }) => {
        if (event.type !== 'SESSION.REQUESTED') return
        const result = reply('startSession', event, () => {
          const { campaignId } = event
          registry.touch(campaignId)
          // Forced, or the session is already on its way out: it is torn down and the new one
          // starts once its engine is gone (the new sessionId is answered now).
          const current = currentOf(event)
          if (current?.live) current.session.actor.send({ type: 'SESSION.REQUESTED', force: true })
          if (current) registry.retireCurrent(campaignId)
          context.pendingRestarts.delete(campaignId)
          startSession(self, campaignId, event.caller.userId, {
            ...(event.pairWithPhoneNumber !== undefined
              ? { pairWithPhoneNumber: event.pairWithPhoneNumber }
              : {}),
            ...(event.proxy !== undefined ? { proxy: event.proxy } : {}),
          })
          return { ok: true, outcome: 'started', view: registry.view(campaignId) }
        })
        if (!result.ok) return
        enqueue.cancel(restartDelayId(event.campaignId))
        enqueue.assign(({ context }) => ({
          started: context.started + 1,
          live: registry.liveCount,
        }))
      }),
      refuseWhileShuttingDown: ({ event }) => {
        if (event.type !== 'SESSION.REQUESTED') return
        safely('reply', undefined, () => event.reply({ ok: false, error: 'shutting_down' }))
      },
      cancelRestart: enqueueActions(({ context, event, enqueue }) => {
        if (event.type !== 'CLEANUP.REQUESTED') return
        if (context.pendingRestarts.delete(event.campaignId)) {
          enqueue.cancel(restartDelayId(event.campaignId))
        }
      }),
      tearDownLiveSessions: enqueueActions(({ event }) => {
        if (event.type !== 'CLEANUP.REQUESTED') return
        const { campaignId } = event
        const result = safely<Promise<CleanupResult>>(
          'tearDownLiveSessions',
          Promise.resolve({ campaignId, sessionId: null, hadSession: false }),
          () => {
            const sessions = registry.sessionsOf(campaignId)
            const type = event.logout
              ? 'UNLINK.REQUESTED'
              : event.handover
                ? 'SHUTDOWN.REQUESTED'
                : 'CLEANUP.REQUESTED'
            for (const session of sessions) session.actor.send({ type })
            const sessionId = sessions[0]!.sessionId
            // The sessions live now, not the campaign: a session requested meanwhile has its own
            // lifetime, and waiting for it would make the answer unbounded.
            return registry
              .whenEnded(sessions)
              .then(() => ({ campaignId, sessionId, hadSession: true }))
          },
          { campaignId }
        )
        safely('reply', undefined, () => event.reply(result))
      }),
      answerNothingToClean: ({ event }) => {
        if (event.type !== 'CLEANUP.REQUESTED') return
        const { campaignId } = event
        const sessionId = safely('answerNothingToClean', null, () => {
          return registry.lastEnded(campaignId)?.sessionId ?? null
        })
        safely('reply', undefined, () =>
          event.reply(Promise.resolve({ campaignId, sessionId, hadSession: false }))
        )
      },
      restartSession: enqueueActions(({ context, event, self, enqueue }) => {
        if (event.type !== 'RESTART.DUE') return
        const { campaignId } = event
        const owner = context.pendingRestarts.get(campaignId)!
        context.pendingRestarts.delete(campaignId)
        safely(
          'restartSession',
          undefined,
          () => {
            startSession(self, campaignId, owner)
            enqueue.assign(({ context }) => ({
              started: context.started + 1,
              restarts: context.restarts + 1,
              live: registry.liveCount,
            }))
          },
          { campaignId }
        )
      }),
      dropRestart: ({ context, event }) => {
        if (event.type !== 'RESTART.DUE') return
        context.pendingRestarts.delete(event.campaignId)
      },
      endSession: enqueueActions(({ event, enqueue }) => {
        if (event.type !== 'SESSION.ENDED' && event.type !== 'SESSION.FAILED') return
        const { sessionId } = event
        safely(
          'endSession',
          undefined,
          () => {
            const bug = event.type === 'SESSION.FAILED' ? event.error : undefined
            const { successor } = registry.endSession(sessionId, bug)
            if (event.type === 'SESSION.FAILED') {
              deps.onError(bug, { sessionId, action: 'campaign actor failed' })
              // Its own cleanup did not run: make sure its engine is stopped anyway.
              safely('stopEngineOf', undefined, () => deps.stopEngineOf(sessionId), { sessionId })
            }
            successor?.actor.send({ type: 'PREDECESSOR.STOPPED' })
            enqueue.assign(({ context }) => ({
              ended: context.ended + 1,
              live: registry.liveCount,
            }))
          },
          { sessionId }
        )
      }),
      scheduleRestart: enqueueActions(({ context, event, enqueue }) => {
        if (event.type !== 'SESSION.ENDED') return
        const { campaignId } = event.output
        safely(
          'scheduleRestart',
          undefined,
          () => {
            // Not if a session was requested meanwhile, the campaign was forgotten, or a restart
            // is already scheduled (a duplicate end).
            if (registry.current(campaignId) || context.pendingRestarts.has(campaignId)) return
            const owner = registry.ownerOf(campaignId)
            if (owner === undefined) return
            const now = deps.now()
            const spent = spendRestart(
              context.recentRestarts.get(campaignId),
              now,
              deps.restartPolicy,
              deps.random()
            )
            if (!spent) return
            context.recentRestarts.set(campaignId, spent.times)
            if (shouldPrune(context.recentRestarts, context.prunedSize)) {
              const recentRestarts = pruneRestarts(context.recentRestarts, now, deps.restartPolicy)
              enqueue.assign({ recentRestarts, prunedSize: recentRestarts.size })
            }
            context.pendingRestarts.set(campaignId, owner)
            deps.onRestart?.(campaignId, spent.delayMs)
            enqueue.raise(
              { type: 'RESTART.DUE', campaignId },
              { delay: spent.delayMs, id: restartDelayId(campaignId) }
            )
          },
          { campaignId }
        )
      }),
      stopAccepting: assign({ accepting: false }),
      cancelPendingRestarts: enqueueActions(({ context, enqueue }) => {
        for (const campaignId of context.pendingRestarts.keys()) {
          enqueue.cancel(restartDelayId(campaignId))
        }
        enqueue.assign({ pendingRestarts: new Map() })
      }),
      shutDownEverySession: enqueueActions(({ enqueue }) => {
        for (const session of registry.allLive()) {
          enqueue.sendTo(session.actor, { type: 'SHUTDOWN.REQUESTED' })
        }
      }),
    },
  }).createMachine({
    id: 'supervisor',
    description:
      'Starts and stops campaign actors: one live session per campaign, `MAX_SESSIONS`, restarts of crashed ready sessions with backoff, graceful shutdown.',
    context: () => ({
      accepting: true,
      live: 0,
      started: 0,
      ended: 0,
      restarts: 0,
      recentRestarts: new Map(),
      prunedSize: 0,
      pendingRestarts: new Map(),
    }),
    initial: 'running',
    on: {
      'SESSION.ENDED': { actions: 'endSession' },
      'SESSION.FAILED': { actions: 'endSession' },
      'CLEANUP.REQUESTED': [
        { guard: 'hasLiveSessions', actions: ['cancelRestart', 'tearDownLiveSessions'] },
        { actions: ['cancelRestart', 'answerNothingToClean'] },
      ],
    },
    states: {
      running: {
        description:
          'Accepts requests: start or join, clean up; restarts ready sessions that crashed or went unresponsive.',
        on: {
          'SESSION.REQUESTED': [
            { guard: 'isNotOwner', actions: 'answerForbidden' },
            { guard: 'isReady', actions: 'joinSession' },
            { guard: 'linksOtherwise', actions: 'startSession' },
            { guard: 'isJoinable', actions: 'joinSession' },
            { guard: 'hasSessionToReplace', actions: 'startSession' },
            { guard: 'isAtCapacity', actions: 'answerAtCapacity' },
            { actions: 'startSession' },
          ],
          'RESTART.DUE': [
            { guard: 'isRestartStillWanted', actions: 'restartSession' },
            { actions: 'dropRestart' },
          ],
          'SESSION.ENDED': {
            guard: 'diedWhileReady',
            actions: ['endSession', 'scheduleRestart'],
          },
          'SHUTDOWN.REQUESTED': 'shuttingDown',
        },
      },
      shuttingDown: {
        description:
          'Refuses new sessions and tears every session down in parallel, each within its bounded stop.',
        entry: ['stopAccepting', 'cancelPendingRestarts', 'shutDownEverySession'],
        on: {
          'SESSION.REQUESTED': { actions: 'refuseWhileShuttingDown' },
        },
        always: { guard: 'hasNoLiveSession', target: 'stopped' },
      },
      stopped: {
        description: 'Every session is gone.',
        type: 'final',
      },
    },
  })
}

export type SupervisorMachine = ReturnType<typeof createSupervisorMachine>

/** What each event means; statecharts.md is generated from these. */
export const SUPERVISOR_EVENTS: Record<string, string> = {
  'SESSION.REQUESTED': 'Start or join a campaign session (answered at once through `reply`).',
  'CLEANUP.REQUESTED':
    "Tear a campaign's sessions down (answered with a promise of the engine being gone).",
  'RESTART.DUE':
    'The backoff before restarting a ready session that crashed or went unresponsive has passed.',
  'SHUTDOWN.REQUESTED': 'Stop accepting sessions and tear every session down.',
  'SESSION.ENDED':
    'A campaign actor reached `cleaned`: remove it, leave its tombstone, maybe restart.',
  'SESSION.FAILED':
    'A campaign actor failed with a bug: remove it, stop its engine, leave a `failed` tombstone.',
}

export const SUPERVISOR_GUARDS: Record<string, string> = {
  hasNoLiveSession: 'No campaign actor is left.',
  isNotOwner:
    'The campaign belongs to another user and the caller is no admin: `forbidden`, and nothing is kept.',
  isReady: 'Not forced, and the current session is `ready`: answered `ready` with it.',
  isJoinable:
    'Not forced, and the current session is live (not on its way out): joined, no second session.',
  linksOtherwise:
    'A pairing-code request, and the live session (not ready) links by QR or with another phone number: it is replaced, as with `force`.',
  hasSessionToReplace:
    'A current session that is forced out or already on its way out (`cleaning`, `timedOut`, `failed`): a new session starts behind it, once its engine is gone.',
  isAtCapacity:
    '`MAX_SESSIONS` sessions are live: `at_capacity` with `Retry-After`, and nothing is kept.',
  hasLiveSessions:
    'The campaign has sessions not yet cleaned: each is torn down, and the answer waits for their engines to be gone.',
  isRestartStillWanted:
    'A restart is still scheduled, no session was requested meanwhile, and there is room: the session restarts with its saved auth.',
  diedWhileReady:
    'The session ended because its engine crashed, or WhatsApp stopped answering the liveness probe (`unresponsive`), while `ready`: a restart is scheduled if the budget allows (at most 3 in 5 minutes).',
}

/** Why the supervisor is as it is; the design notes of statecharts.md. */
export const SUPERVISOR_DESIGN_NOTES: string[] = [
  `**Why the supervisor does not use \`spawnChild\`, nor one shared actor system.** XState copies
\`snapshot.children\` on every spawn and stop, so one machine with N children costs O(N²): 10k
children took 14.6 s to spawn and 22.6 s to stop on this kind of machine. Putting the campaign
actors in the supervisor's system without \`spawnChild\` (the \`parent\` option) avoids that copy,
but stopping an actor still scans every scheduled event of its system (\`scheduler.cancelAll\`):
we measured 10k sessions taking 3.1 s to shut down against 72 ms for 1k, and a system per session
costs ~2 KiB of heap each. So campaign actors share the systems of small *shards* (256 sessions
each, on the supervisor's clock; a shard stops once its sessions have ended), and the supervisor
keeps them in its own \`CampaignTable\` (Maps keyed by campaign and session): starting or ending a
session costs the same with 10 sessions or 100,000 (see BENCHMARKS.md). The supervisor stays an
XState actor: each campaign actor reports its end to it as \`SESSION.ENDED\` (or
\`SESSION.FAILED\` for a bug), and the inspector attaches to the supervisor and to every campaign
actor, only while a viewer is connected. Sharding into several supervisor machines was rejected:
each would still pay O(n²) for its own n children.`,
  `**The supervisor's actions are total.** An action that throws would put the supervisor in
\`error\` and leave every campaign actor running. Each action catches, logs and answers; a campaign
actor that fails with a bug is removed, its engine stopped through the tracked engine, and a
\`failed\` tombstone left. One campaign's bug never stops another.`,
]

export const SUPERVISOR_DELAYS: Record<string, string> = {
  'restart:<campaignId>':
    'Backoff before a restart: 1 s · 2ⁿ (n = restarts in the last 5 min), at most 30 s, with equal jitter.',
}
