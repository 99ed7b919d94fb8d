/**
 * The campaign session machine: one actor per session of a campaign, from the request that
 * starts it to the moment its engine is gone.
 *
 *   idle → initializing → awaitingScan → authenticating → ready (probed every interval)
 *                 ↘ timedOut | failed ↙          ↓ (cleanup, force, shutdown)
 *                          cleaning → cleaned (final)
 *
 * The machine owns every deadline (init, scan, auth, teardown) and the liveness probe's timing
 * and verdict, and never does I/O itself: the engine comes in through the `startEngine`,
 * `probeEngine` and `stopEngine` actions, the time as `now`, both
 * from the factory's dependencies. It emits what subscribers need to know (`status`, `qr`, `ready`, `error`), and
 * its output tells the supervisor how the session ended.
 *
 * @module
 */
import { and, assign, emit, enqueueActions, setup } from 'xstate'
import type { EngineTerminationKind } from '../engines/engine.ts'
import type { EngineControl, EngineControlEvent } from './engineControl.ts'
import { MAX_HISTORY } from './status.ts'
import type { FailureReason, HistoryEntry, SessionReason, SessionStatus } from './status.ts'
import { describeFailure } from './messages.ts'
import { probeOffsetMs, type LivenessSettings } from './liveness.ts'

export interface CampaignTimeouts {
  /** Start until the first QR (or until ready, when saved auth is reused). */
  initMs: number
  /** First QR until the phone scans it. QR rotations do not extend it. */
  scanMs: number
  /** Scan until WhatsApp is ready. */
  authMs: number
  /** The engine's bounded stop (graceful + forced) plus a margin: the machine's own safety net. */
  teardownMs: number
}

export interface CampaignInput {
  campaignId: string
  sessionId: string
  timeouts: CampaignTimeouts
  /** True when the campaign's previous session is still being torn down: start after it. */
  awaitPredecessor: boolean
  /** How a ready session is probed. */
  liveness: LivenessSettings
  /** Link with this phone number (a pairing code typed on the phone) instead of a QR. */
  pairWithPhoneNumber?: string
  /** The node that runs the session, in a cluster (shown by the inspector). */
  node?: string
}

export interface CurrentQr {
  qr: string
  attempt: number
  expiresAt: number
}

/** The pairing code shown, when the session links with a phone number. */
export interface CurrentPairingCode {
  code: string
  /** The scan deadline (epoch ms): it applies to codes as to QRs, from the first one. */
  expiresAt: number
}

export interface CampaignContext {
  campaignId: string
  sessionId: string
  /** The node that runs the session, in a cluster; null outside one. */
  node: string | null
  timeouts: CampaignTimeouts
  awaitPredecessor: boolean
  /** Deadline of the current phase (epoch ms), or null. This is the contract's `expiresAt`. */
  phaseDeadline: number | null
  /** Set once, at the first QR. */
  scanDeadline: number | null
  qr: CurrentQr | null
  /** QRs shown so far in this session (the next QR's attempt is this + 1). */
  qrAttempts: number
  /** Link with this phone number instead of a QR; null for a QR. */
  pairWithPhoneNumber: string | null
  /** The pairing code shown now (a renewal replaces it); null when none is. */
  pairingCode: CurrentPairingCode | null
  reason: SessionReason | null
  /**
   * What the engine said about a failure, as people may read it (`explainEngineFailure`: no
   * secrets, a hint when the cause is known); in the history and the subscribers' `error`.
   */
  detail: string | null
  failureKind: EngineTerminationKind | null
  /** The status the session was in when it failed or timed out. */
  endedFrom: SessionStatus | null
  history: HistoryEntry[]
  teardown: { forced: boolean; durationMs: number } | null
  /** Unlinking: the engine logs the device out of WhatsApp before it stops. */
  logout: boolean
  liveness: LivenessSettings
  /** When WhatsApp was last known connected: `ready`, then each probe answered `CONNECTED`. */
  lastSeenAliveAt: number | null
  /** Probes sent so far (the number of the current one); a late answer to another is ignored. */
  probes: number
  /** Misses in a row (reset by an answer `CONNECTED`). */
  probeMisses: number
  /** What the last miss saw (the detail of an `unresponsive` end). */
  probeMissDetail: string | null
  /** When the next probe is due (epoch ms): a fixed rhythm, so probes stay spread. */
  nextProbeAt: number | null
}

export type CampaignEvent =
  | { type: 'START' }
  | { type: 'PREDECESSOR.STOPPED' }
  | { type: 'SESSION.REQUESTED'; force: boolean }
  | { type: 'CLEANUP.REQUESTED' }
  | { type: 'UNLINK.REQUESTED' }
  | { type: 'SHUTDOWN.REQUESTED' }
  | EngineControlEvent

/** What the machine tells its subscribers (through the supervisor). Times are epoch ms. */
export type CampaignEmitted = { sessionId: string; at: number } & (
  | { type: 'status'; status: SessionStatus; reason: SessionReason | null }
  | { type: 'qr'; qr: string; attempt: number; expiresAt: number }
  | { type: 'pairing_code'; code: string; expiresAt: number }
  | { type: 'ready' }
  | { type: 'error'; code: FailureReason; message: string; detail: string | null }
  /** A liveness probe ended: answered `CONNECTED` (alive), or a miss. Counted, not published. */
  | { type: 'probe'; outcome: 'alive' | 'missed' }
)

export interface CampaignOutput {
  campaignId: string
  sessionId: string
  reason: SessionReason | null
  failureKind: EngineTerminationKind | null
  endedFrom: SessionStatus | null
}

export interface CampaignMachineDeps {
  engines: EngineControl
  now: () => number
}

/**
 * The groupings of statuses, as state tags: ask a snapshot `hasTag(…)`, never a list of statuses.
 * - `active`: holds (or is starting) an engine a request may join (`initializing` to `ready`).
 * - `ended`: on its way out or gone (`timedOut`, `failed`, `cleaning`, `cleaned`); a new request
 *   starts a new session behind it.
 */
export type CampaignTag = 'active' | 'ended'

/** The status a snapshot value stands for (nested `initializing` states count as one). */
export function statusOf(value: string | Record<string, unknown>): SessionStatus {
  return (typeof value === 'string' ? value : Object.keys(value)[0]) as SessionStatus
}

/**
 * The statuses whose states carry `tag`, read from the machine's definition: for a status alone
 * (an emitted `status` event), where no snapshot is at hand to ask.
 */
export function statusesTagged(
  machine: CampaignMachine,
  tag: CampaignTag
): ReadonlySet<SessionStatus> {
  return new Set(
    Object.values(machine.root.states)
      .filter((state) => state.tags.includes(tag))
      .map((state) => state.key as SessionStatus)
  )
}

/**
 * The transitions every active status shares, declared once. Not on a parent state of the active
 * statuses: that would turn every state path the inspector shows and its viewers filter by
 * (`ready`, `awaitingScan → authenticating`) into `live.ready`, `live.awaitingScan → …`.
 */
const replacedWhenForced = {
  guard: 'isForced',
  target: 'cleaning',
  actions: { type: 'markEndedBy', params: { reason: 'replaced' } },
} as const

function failedByEngine(from: SessionStatus) {
  return {
    guard: 'isOwnEngineEvent',
    target: 'failed',
    actions: { type: 'markFailedByEngine', params: { from } },
  } as const
}

/** The reason a session ends with when its engine ended on its own. */
function failureReasonOf(kind: EngineTerminationKind): FailureReason {
  switch (kind) {
    case 'logged_out':
      return 'logged_out'
    case 'lease_lost':
      return 'node_lost'
    default:
      return 'engine_failed'
  }
}

export function createCampaignMachine({ engines, now }: CampaignMachineDeps) {
  return setup({
    types: {
      context: {} as CampaignContext,
      events: {} as CampaignEvent,
      input: {} as CampaignInput,
      emitted: {} as CampaignEmitted,
      output: {} as CampaignOutput,
      tags: {} as CampaignTag,
    },
    guards: {
      awaitsPredecessor: ({ context }) => context.awaitPredecessor,
      isForced: ({ event }) => event.type === 'SESSION.REQUESTED' && event.force,
      /**
       * An engine event belongs to this session's own engine instance. Anything else is a
       * leftover of an engine that is no longer ours: a late QR must never revive a session.
       */
      isOwnEngineEvent: ({ context, event }) =>
        'sessionId' in event && event.sessionId === context.sessionId,
      /** The answer is to the probe in flight, of this session (a late answer is a stale one). */
      isCurrentProbe: ({ context, event }) =>
        'probe' in event && event.sessionId === context.sessionId && event.probe === context.probes,
      isLastMiss: ({ context }) => context.probeMisses + 1 >= context.liveness.misses,
    },
    delays: {
      initTimeout: ({ context }) => context.timeouts.initMs,
      scanTimeout: ({ context }) =>
        Math.max(0, (context.scanDeadline ?? now() + context.timeouts.scanMs) - now()),
      authTimeout: ({ context }) => context.timeouts.authMs,
      teardownTimeout: ({ context }) => context.timeouts.teardownMs,
      nextProbe: ({ context }) => Math.max(0, (context.nextProbeAt ?? now()) - now()),
      probeTimeout: ({ context }) => context.liveness.timeoutMs,
    },
    actions: {
      recordStatus: enqueueActions(
        ({ context, enqueue }, params: { status: SessionStatus; deadlineMs?: number }) => {
          const at = now()
          // Set only on the way out: an active status has none.
          const reason = context.reason
          const entry: HistoryEntry = { status: params.status, at }
          if (reason) entry.reason = reason
          if (reason && context.detail && params.status !== 'cleaned') entry.detail = context.detail
          const history =
            context.history.length >= MAX_HISTORY
              ? [...context.history.slice(1 - MAX_HISTORY), entry]
              : [...context.history, entry]
          enqueue.assign({
            history,
            phaseDeadline: params.deadlineMs === undefined ? null : at + params.deadlineMs,
          })
          enqueue.emit({
            type: 'status',
            sessionId: context.sessionId,
            status: params.status,
            reason,
            at,
          })
        }
      ),
      armScanDeadline: assign({
        phaseDeadline: ({ context }) => context.scanDeadline,
      }),
      startEngine: ({ context, self }) =>
        engines.start(context.campaignId, context.sessionId, self, {
          pairWithPhoneNumber: context.pairWithPhoneNumber,
        }),
      stopEngine: ({ context, self }) =>
        engines.stop(context.sessionId, self, { logout: context.logout }),
      markLogout: assign({ logout: true }),
      markAlive: assign(() => ({ lastSeenAliveAt: now(), probeMisses: 0 })),
      scheduleFirstProbe: assign(({ context }) => ({
        nextProbeAt: now() + probeOffsetMs(context.sessionId, context.liveness.intervalMs),
      })),
      probeEngine: enqueueActions(({ context, self, enqueue }) => {
        const probe = context.probes + 1
        enqueue.assign({
          probes: probe,
          nextProbeAt: (context.nextProbeAt ?? now()) + context.liveness.intervalMs,
        })
        enqueue(() => engines.probe(context.sessionId, probe, self))
      }),
      recordAlive: enqueueActions(({ context, enqueue }) => {
        enqueue.assign({ lastSeenAliveAt: now(), probeMisses: 0, probeMissDetail: null })
        enqueue.emit({ type: 'probe', sessionId: context.sessionId, outcome: 'alive', at: now() })
      }),
      recordMiss: enqueueActions(({ context, event, enqueue }) => {
        const detail =
          event.type === 'ENGINE.PROBE_FAILED'
            ? event.detail
            : `the WhatsApp page did not answer within ${context.liveness.timeoutMs} ms`
        enqueue.assign({ probeMisses: context.probeMisses + 1, probeMissDetail: detail })
        enqueue.emit({ type: 'probe', sessionId: context.sessionId, outcome: 'missed', at: now() })
      }),
      markUnresponsive: assign(({ context }) => ({
        reason: 'unresponsive' as const,
        endedFrom: 'ready' as const,
        failureKind: null,
        detail: `${context.probeMissDetail ?? 'no answer'} (${context.probeMisses} liveness probes in a row)`,
      })),
      recordQr: enqueueActions(({ context, event, enqueue }) => {
        if (event.type !== 'ENGINE.QR_RECEIVED') return
        const at = now()
        const scanDeadline = context.scanDeadline ?? at + context.timeouts.scanMs
        const qr: CurrentQr = {
          qr: event.qr,
          attempt: context.qrAttempts + 1,
          expiresAt: scanDeadline,
        }
        enqueue.assign({ qr, scanDeadline, qrAttempts: qr.attempt })
        enqueue.emit({ type: 'qr', sessionId: context.sessionId, ...qr, at })
      }),
      clearQr: assign({ qr: null }),
      recordPairingCode: enqueueActions(({ context, event, enqueue }) => {
        if (event.type !== 'ENGINE.PAIRING_CODE_RECEIVED') return
        const at = now()
        const scanDeadline = context.scanDeadline ?? at + context.timeouts.scanMs
        const pairingCode: CurrentPairingCode = { code: event.code, expiresAt: scanDeadline }
        enqueue.assign({ pairingCode, scanDeadline })
        enqueue.emit({ type: 'pairing_code', sessionId: context.sessionId, ...pairingCode, at })
      }),
      clearPairingCode: assign({ pairingCode: null }),
      markFailed: assign(
        (
          { context, event },
          params: { reason: FailureReason; from: SessionStatus }
        ): Partial<CampaignContext> => ({
          reason: params.reason,
          endedFrom: params.from,
          failureKind: event.type === 'ENGINE.TERMINATED' ? event.kind : context.failureKind,
          detail: event.type === 'ENGINE.TERMINATED' ? event.detail : context.detail,
        })
      ),
      markFailedByEngine: assign(({ event }, params: { from: SessionStatus }) => {
        if (event.type !== 'ENGINE.TERMINATED') return {}
        return {
          reason: failureReasonOf(event.kind),
          endedFrom: params.from,
          failureKind: event.kind,
          detail: event.detail,
        }
      }),
      markEndedBy: assign(({ context }, params: { reason: SessionReason }) => ({
        reason: context.reason ?? params.reason,
      })),
      emitFailure: emit(({ context }) => {
        const code = context.reason as FailureReason
        return {
          type: 'error' as const,
          sessionId: context.sessionId,
          code,
          message: describeFailure(code, context.timeouts, context.failureKind, {
            byPairingCode: context.pairWithPhoneNumber !== null,
          }),
          detail: context.detail,
          at: now(),
        }
      }),
      emitReady: emit(({ context }) => ({
        type: 'ready' as const,
        sessionId: context.sessionId,
        at: now(),
      })),
      recordTeardown: assign(({ event }) =>
        event.type === 'ENGINE.STOPPED'
          ? { teardown: { forced: event.forced, durationMs: event.durationMs } }
          : { teardown: { forced: true, durationMs: -1 }, detail: 'the engine stop did not settle' }
      ),
    },
  }).createMachine({
    id: 'campaign',
    description:
      'One actor per session of a campaign. It owns every deadline of the session and every way out goes through `cleaning` (the bounded engine stop) to `cleaned`.',
    context: ({ input }) => ({
      campaignId: input.campaignId,
      sessionId: input.sessionId,
      node: input.node ?? null,
      timeouts: input.timeouts,
      awaitPredecessor: input.awaitPredecessor,
      phaseDeadline: null,
      scanDeadline: null,
      qr: null,
      qrAttempts: 0,
      pairWithPhoneNumber: input.pairWithPhoneNumber ?? null,
      pairingCode: null,
      reason: null,
      detail: null,
      failureKind: null,
      endedFrom: null,
      history: [],
      teardown: null,
      logout: false,
      liveness: input.liveness,
      lastSeenAliveAt: null,
      probes: 0,
      probeMisses: 0,
      probeMissDetail: null,
      nextProbeAt: null,
    }),
    initial: 'idle',
    on: {
      'CLEANUP.REQUESTED': {
        target: '.cleaning',
        actions: { type: 'markEndedBy', params: { reason: 'cleanup_requested' } },
      },
      'UNLINK.REQUESTED': {
        target: '.cleaning',
        actions: [{ type: 'markEndedBy', params: { reason: 'unlinked' } }, 'markLogout'],
      },
      'SHUTDOWN.REQUESTED': {
        target: '.cleaning',
        actions: { type: 'markEndedBy', params: { reason: 'shutdown' } },
      },
    },
    states: {
      idle: {
        description: 'Created by the supervisor; waits for START.',
        on: { START: 'initializing' },
      },
      initializing: {
        tags: 'active',
        description:
          'The engine is starting (after the previous session of the campaign is gone). The init deadline runs from START until the first QR, or until ready when saved auth is reused.',
        entry: {
          type: 'recordStatus',
          params: ({ context }) => ({
            status: 'initializing' as const,
            deadlineMs: context.timeouts.initMs,
          }),
        },
        initial: 'checkingPredecessor',
        states: {
          checkingPredecessor: {
            always: [
              { guard: 'awaitsPredecessor', target: 'waitingForPredecessor' },
              { target: 'startingEngine' },
            ],
          },
          waitingForPredecessor: {
            description:
              "The campaign's previous engine is being torn down; its profile is not free yet.",
            on: { 'PREDECESSOR.STOPPED': 'startingEngine' },
          },
          startingEngine: {
            entry: 'startEngine',
          },
        },
        after: {
          initTimeout: {
            target: 'timedOut',
            actions: {
              type: 'markFailed',
              params: { reason: 'init_timeout', from: 'initializing' },
            },
          },
        },
        on: {
          'ENGINE.QR_RECEIVED': {
            guard: 'isOwnEngineEvent',
            target: 'awaitingScan',
            actions: 'recordQr',
          },
          'ENGINE.PAIRING_CODE_RECEIVED': {
            guard: 'isOwnEngineEvent',
            target: 'awaitingScan',
            actions: 'recordPairingCode',
          },
          'ENGINE.READY': { guard: 'isOwnEngineEvent', target: 'ready' },
          'ENGINE.TERMINATED': failedByEngine('initializing'),
          'SESSION.REQUESTED': replacedWhenForced,
        },
      },
      awaitingScan: {
        tags: 'active',
        description:
          'A QR (or a pairing code, when linking with a phone number) is shown. The scan deadline runs from the first one; rotations replace the QR or code but do not extend it.',
        entry: [{ type: 'recordStatus', params: { status: 'awaitingScan' } }, 'armScanDeadline'],
        exit: ['clearQr', 'clearPairingCode'],
        after: {
          scanTimeout: {
            target: 'timedOut',
            actions: {
              type: 'markFailed',
              params: { reason: 'scan_timeout', from: 'awaitingScan' },
            },
          },
        },
        on: {
          'ENGINE.QR_RECEIVED': { guard: 'isOwnEngineEvent', actions: 'recordQr' },
          'ENGINE.PAIRING_CODE_RECEIVED': {
            guard: 'isOwnEngineEvent',
            actions: 'recordPairingCode',
          },
          'ENGINE.AUTHENTICATED': { guard: 'isOwnEngineEvent', target: 'authenticating' },
          'ENGINE.READY': { guard: 'isOwnEngineEvent', target: 'ready' },
          'ENGINE.TERMINATED': failedByEngine('awaitingScan'),
          'SESSION.REQUESTED': replacedWhenForced,
        },
      },
      authenticating: {
        tags: 'active',
        description: 'Scanned; WhatsApp is syncing. The auth deadline runs until ready.',
        entry: {
          type: 'recordStatus',
          params: ({ context }) => ({
            status: 'authenticating' as const,
            deadlineMs: context.timeouts.authMs,
          }),
        },
        after: {
          authTimeout: {
            target: 'timedOut',
            actions: {
              type: 'markFailed',
              params: { reason: 'auth_timeout', from: 'authenticating' },
            },
          },
        },
        on: {
          'ENGINE.READY': { guard: 'isOwnEngineEvent', target: 'ready' },
          'ENGINE.QR_RECEIVED': {
            description:
              'The scan did not take and WhatsApp shows a new QR (within the scan deadline).',
            guard: 'isOwnEngineEvent',
            target: 'awaitingScan',
            actions: 'recordQr',
          },
          'ENGINE.TERMINATED': failedByEngine('authenticating'),
          'SESSION.REQUESTED': replacedWhenForced,
        },
      },
      ready: {
        tags: 'active',
        description:
          'Linked and connected. A re-request changes nothing; only force replaces it. WhatsApp is probed every `LIVENESS_INTERVAL_MS` (each session at its own offset in the interval); `LIVENESS_MISSES` misses in a row end it `unresponsive`.',
        entry: [
          { type: 'recordStatus', params: { status: 'ready' } },
          'emitReady',
          'markAlive',
          'scheduleFirstProbe',
        ],
        initial: 'waitingForProbe',
        states: {
          waitingForProbe: {
            description: 'Until the next probe is due.',
            after: { nextProbe: 'probing' },
          },
          probing: {
            description:
              'The engine is asked whether WhatsApp is connected; `LIVENESS_TIMEOUT_MS` bounds the answer.',
            entry: 'probeEngine',
            after: {
              probeTimeout: [
                {
                  guard: 'isLastMiss',
                  target: '#campaign.failed',
                  actions: ['recordMiss', 'markUnresponsive'],
                },
                { target: 'waitingForProbe', actions: 'recordMiss' },
              ],
            },
            on: {
              'ENGINE.ALIVE': {
                guard: 'isCurrentProbe',
                target: 'waitingForProbe',
                actions: 'recordAlive',
              },
              'ENGINE.PROBE_FAILED': [
                {
                  guard: and(['isCurrentProbe', 'isLastMiss']),
                  target: '#campaign.failed',
                  actions: ['recordMiss', 'markUnresponsive'],
                },
                { guard: 'isCurrentProbe', target: 'waitingForProbe', actions: 'recordMiss' },
              ],
            },
          },
        },
        on: {
          'ENGINE.TERMINATED': failedByEngine('ready'),
          'ENGINE.QR_RECEIVED': {
            description: 'A QR after ready means WhatsApp dropped the link.',
            guard: 'isOwnEngineEvent',
            target: 'failed',
            actions: { type: 'markFailed', params: { reason: 'logged_out', from: 'ready' } },
          },
          'SESSION.REQUESTED': replacedWhenForced,
        },
      },
      timedOut: {
        tags: 'ended',
        description: 'A deadline passed (reason: init_timeout, scan_timeout or auth_timeout).',
        entry: [{ type: 'recordStatus', params: { status: 'timedOut' } }, 'emitFailure'],
        always: 'cleaning',
      },
      failed: {
        tags: 'ended',
        description:
          'The engine failed, the phone logged out, WhatsApp stopped answering the liveness probe, or the node lost the lease of the campaign (`node_lost`); reason says which.',
        entry: [{ type: 'recordStatus', params: { status: 'failed' } }, 'emitFailure'],
        always: 'cleaning',
      },
      cleaning: {
        tags: 'ended',
        description:
          "The engine is being stopped (graceful, then forced). The teardown deadline is the machine's own bound in case the engine's stop never settles.",
        entry: [{ type: 'recordStatus', params: { status: 'cleaning' } }, 'stopEngine'],
        on: {
          'ENGINE.STOPPED': {
            guard: 'isOwnEngineEvent',
            target: 'cleaned',
            actions: 'recordTeardown',
          },
          'CLEANUP.REQUESTED': {},
          'UNLINK.REQUESTED': {},
          'SHUTDOWN.REQUESTED': {},
        },
        after: {
          teardownTimeout: { target: 'cleaned', actions: 'recordTeardown' },
        },
      },
      cleaned: {
        tags: 'ended',
        description: 'The engine is gone. Final: a new request starts a new session.',
        type: 'final',
        entry: { type: 'recordStatus', params: { status: 'cleaned' } },
      },
    },
    output: ({ context }) => ({
      campaignId: context.campaignId,
      sessionId: context.sessionId,
      reason: context.reason,
      failureKind: context.failureKind,
      endedFrom: context.endedFrom,
    }),
  })
}

export type CampaignMachine = ReturnType<typeof createCampaignMachine>

/** What each event means; statecharts.md is generated from these. */
export const CAMPAIGN_EVENTS: Record<CampaignEvent['type'], string> = {
  START: 'The supervisor starts the session (right after creating it).',
  'PREDECESSOR.STOPPED': "The campaign's previous session is gone; its engine profile is free.",
  'SESSION.REQUESTED': 'Someone asked for a QR again (`force` to replace the session).',
  'CLEANUP.REQUESTED': 'Someone asked to tear the session down.',
  'UNLINK.REQUESTED':
    'Someone unlinked the campaign: the engine logs the device out of WhatsApp as it stops.',
  'SHUTDOWN.REQUESTED': 'The service is shutting down.',
  'ENGINE.QR_RECEIVED': 'The engine shows a QR (first one, or a rotation).',
  'ENGINE.PAIRING_CODE_RECEIVED':
    'The engine has a pairing code to type on the phone (first one, or a renewal), when the session links with a phone number.',
  'ENGINE.AUTHENTICATED':
    'The phone scanned the QR (or took the pairing code), or saved auth was accepted.',
  'ENGINE.READY': 'WhatsApp is linked and connected.',
  'ENGINE.TERMINATED':
    'The engine ended on its own (start failure, logout, crash, error), or was killed because the node lost the lease of the campaign.',
  'ENGINE.STOPPED': "The engine's bounded stop settled: no process of it is left.",
  'ENGINE.ALIVE': 'The liveness probe found WhatsApp connected (`CONNECTED`).',
  'ENGINE.PROBE_FAILED':
    'The liveness probe got another connection state (e.g. `TIMEOUT`) or an error from the page.',
}

export const CAMPAIGN_GUARDS: Record<string, string> = {
  awaitsPredecessor: "The campaign's previous session is still being torn down.",
  isForced: 'The request carries `force: true`.',
  isOwnEngineEvent:
    "The event comes from this session's own engine instance (a late event of another is ignored).",
  isCurrentProbe:
    'The answer is to the probe in flight, from this session (a late answer to an earlier probe is ignored).',
  isLastMiss:
    'This miss makes `LIVENESS_MISSES` in a row: the session fails `unresponsive` (and is restarted like a crash).',
}

/** Why the campaign machine is as it is; the design notes of statecharts.md. */
export const CAMPAIGN_DESIGN_NOTES: string[] = [
  `The statuses of the public contract are the top-level states of the campaign machine
(\`initializing\` has substates, reported as \`initializing\`).`,
  `**One actor per session, not per campaign.** A campaign actor lives from the request that starts
a session until its engine is gone (\`cleaned\`, final). A new request after that starts a new actor
with a new \`sessionId\`; the supervisor keeps the campaign's owner, its subscribers and the
tombstone of its last session. So an ended session can never be revived by a late engine event:
there is no transition out of \`cleaned\`, and engine events are checked against the session's own
engine instance (\`isOwnEngineEvent\`).`,
  `**Every way out goes through \`cleaning\`.** Timeouts, engine failures, cleanup requests, \`force\`
and shutdown all enter \`cleaning\`, which stops the engine (graceful, then forced, bounded by
\`DESTROY_TIMEOUT_MS\` plus the kill bound) and waits for it. \`teardownTimeout\` is the machine's own
bound in case an engine breaks its promise to settle.`,
  `**Liveness: the machine owns the probe.** A session can look connected while it is dead (the
page's socket to WhatsApp is gone without a \`disconnected\` event, or the page hangs). So a
\`ready\` session asks its engine every \`LIVENESS_INTERVAL_MS\` whether WhatsApp is connected
(\`probeEngine\`); \`probeTimeout\` bounds the answer, so a hung page is a miss like a wrong state,
and a late answer (another probe's number) is ignored. Probes follow a fixed rhythm from an offset
in the interval that is a hash of the session id: sessions that became ready together are probed
apart. Each probe is its own promise, so one slow page delays no other session, and leaving
\`ready\` cancels the next one. \`LIVENESS_MISSES\` misses in a row fail the session
\`unresponsive\`, through \`cleaning\`, and the supervisor restarts it as it restarts a crash.`,
  `**Where the QR image is made.** The machine keeps the raw QR text; the image is rendered at the
edge, once per QR and only when someone is watching, off the event loop.`,
]

export const CAMPAIGN_DELAYS: Record<string, string> = {
  initTimeout: '`INIT_TIMEOUT_MS`: from START until the first QR (or ready, with saved auth).',
  scanTimeout:
    '`SCAN_TIMEOUT_MS`: from the first QR or pairing code; rotations and renewals do not extend it.',
  authTimeout: '`AUTH_TIMEOUT_MS`: from the scan until ready.',
  teardownTimeout:
    "`DESTROY_TIMEOUT_MS` + kill bound + 1 s: the machine's own bound on the engine's stop.",
  nextProbe:
    "Until the next liveness probe: the session's offset in `LIVENESS_INTERVAL_MS` after ready, then every interval.",
  probeTimeout: '`LIVENESS_TIMEOUT_MS`: a probe not answered within it is a miss.',
}
