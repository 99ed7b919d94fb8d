/**
 * The campaign machine's handle on its engine: `startEngine` and `stopEngine` are named actions
 * that call this, and engine events come back to the actor as `ENGINE.*` events.
 *
 * Why not an invoked callback actor: that is a second XState actor (with its mailbox, observers
 * and scope) for every session, which doubled the heap of a live session; one Map shared by all
 * sessions does the same job.
 *
 * @module
 */
import type {
  Engine,
  EngineEvent,
  EngineSession,
  EngineTerminationKind,
} from '../engines/engine.ts'
import { explainEngineFailure } from '../engines/failureHint.ts'
import type { ProxySettings } from '../proxy.ts'

/** What a session's actor hears of its engine (part of the campaign machine's events). */
export type EngineControlEvent =
  | { type: 'ENGINE.QR_RECEIVED'; sessionId: string; qr: string }
  | { type: 'ENGINE.PAIRING_CODE_RECEIVED'; sessionId: string; code: string }
  | { type: 'ENGINE.AUTHENTICATED'; sessionId: string }
  | { type: 'ENGINE.READY'; sessionId: string }
  | { type: 'ENGINE.TERMINATED'; sessionId: string; kind: EngineTerminationKind; detail: string }
  | { type: 'ENGINE.STOPPED'; sessionId: string; forced: boolean; durationMs: number }
  /** The liveness probe number `probe` found WhatsApp connected. */
  | { type: 'ENGINE.ALIVE'; sessionId: string; probe: number }
  /** The liveness probe number `probe` got an answer other than connected, or an error. */
  | { type: 'ENGINE.PROBE_FAILED'; sessionId: string; probe: number; detail: string }

/** The session's actor (only its `send` is used). */
type Session = { send(event: EngineControlEvent): void }

interface Running {
  session: EngineSession
  /** Set once stop has been requested: from then on, the engine's events are dropped. */
  stopping: boolean
}

export interface EngineControl {
  /** Starts the session's engine; its events are sent to the session's actor. */
  start(
    campaignId: string,
    sessionId: string,
    actor: Session,
    options?: { pairWithPhoneNumber?: string | null }
  ): void
  /**
   * Stops it (if it ever started) and sends `ENGINE.STOPPED` once it is gone, never before. With
   * `logout`, the engine first logs the device out of WhatsApp (within the same bound).
   */
  stop(sessionId: string, actor: Session, options?: { logout?: boolean }): void
  /**
   * Stops the engine of a session whose actor failed with a bug (so `stopEngine` never ran).
   * Expects anything of the engine, since it may be the reason.
   */
  forceStop(sessionId: string): void
  /**
   * Asks the session's engine whether WhatsApp is connected; the answer comes back as
   * `ENGINE.ALIVE` or `ENGINE.PROBE_FAILED` carrying `probe`, or never (a hung page: the
   * machine's own timeout decides). Each probe is its own promise: a hung one delays no other.
   */
  probe(sessionId: string, probe: number, actor: Session): void
  /** Engine sessions started and not yet stopped: tests use it to prove nothing leaks. */
  liveSessionIds(): string[]
}

export interface EngineControlOptions {
  /**
   * The campaign's proxy when its session starts. Looked up here, not carried by the machine: the
   * credentials never enter an actor's context or events, which the inspector shows.
   */
  proxyOf?: (campaignId: string) => ProxySettings | null
}

export function createEngineControl(
  engine: Engine,
  { proxyOf = () => null }: EngineControlOptions = {}
): EngineControl {
  const running = new Map<string, Running>()

  return {
    start(campaignId, sessionId, actor, { pairWithPhoneNumber } = {}) {
      if (running.has(sessionId)) return
      const relay = (event: EngineEvent) => {
        if (running.get(sessionId)?.stopping !== false) return
        actor.send(toMachineEvent(sessionId, event))
      }
      try {
        const proxy = proxyOf(campaignId)
        const session = engine.createSession({
          campaignId,
          sessionId,
          onEvent: relay,
          ...(pairWithPhoneNumber ? { pairWithPhoneNumber } : {}),
          ...(proxy ? { proxy } : {}),
        })
        running.set(sessionId, { session, stopping: false })
        session.start()
      } catch (error) {
        // An engine that throws on start broke its contract; for the session it is a failed start.
        const detail = explainEngineFailure(error instanceof Error ? error.message : String(error))
        queueMicrotask(() =>
          actor.send({ type: 'ENGINE.TERMINATED', sessionId, kind: 'start_failed', detail })
        )
      }
    },
    stop(sessionId, actor, options = {}) {
      const entry = running.get(sessionId)
      if (entry?.stopping) return
      if (entry) entry.stopping = true
      const stopped = entry
        ? entry.session
            .stop(options.logout ? { logout: true } : undefined)
            .catch(() => ({ forced: true, durationMs: 0 }))
        : Promise.resolve({ forced: false, durationMs: 0 })
      void stopped.then(({ forced, durationMs }) => {
        running.delete(sessionId)
        actor.send({ type: 'ENGINE.STOPPED', sessionId, forced, durationMs })
      })
    },
    forceStop(sessionId) {
      const entry = running.get(sessionId)
      if (!entry) return
      // Even if a stop was requested: it may be the very call that threw. stop() is idempotent.
      entry.stopping = true
      Promise.resolve()
        .then(() => entry.session.stop())
        .catch(() => undefined)
        .finally(() => running.delete(sessionId))
    },
    probe(sessionId, probe, actor) {
      const entry = running.get(sessionId)
      if (!entry || entry.stopping) return
      Promise.resolve()
        .then(() => entry.session.probe())
        .then(
          ({ state }): EngineControlEvent =>
            state === 'CONNECTED'
              ? { type: 'ENGINE.ALIVE', sessionId, probe }
              : {
                  type: 'ENGINE.PROBE_FAILED',
                  sessionId,
                  probe,
                  detail: `WhatsApp reports the connection state ${String(state).slice(0, 40)}`,
                },
          (error: unknown): EngineControlEvent => ({
            type: 'ENGINE.PROBE_FAILED',
            sessionId,
            probe,
            detail: `the probe failed: ${explainEngineFailure(error instanceof Error ? error.message : String(error))}`,
          })
        )
        .then((answer) => {
          // Not once the engine is being stopped: its events are dropped from then on.
          if (running.get(sessionId) === entry && !entry.stopping) actor.send(answer)
        })
        .catch(() => undefined)
    },
    liveSessionIds: () => [...running.keys()],
  }
}

function toMachineEvent(sessionId: string, event: EngineEvent): EngineControlEvent {
  switch (event.type) {
    case 'qr':
      return { type: 'ENGINE.QR_RECEIVED', sessionId, qr: event.qr }
    case 'pairing_code':
      return { type: 'ENGINE.PAIRING_CODE_RECEIVED', sessionId, code: event.code }
    case 'authenticated':
      return { type: 'ENGINE.AUTHENTICATED', sessionId }
    case 'ready':
      return { type: 'ENGINE.READY', sessionId }
    case 'terminated':
      // From here on the detail is public (history, API, subscribers): secrets out, hint in.
      return {
        type: 'ENGINE.TERMINATED',
        sessionId,
        kind: event.kind,
        detail: explainEngineFailure(event.detail),
      }
  }
}
