/**
 * A scripted engine for machine tests: the test decides, event by event, what the engine does
 * and whether its stop settles. It keeps the engine contract's promises (stop is idempotent and
 * never rejects) unless a test asks it to misbehave (`emitAfterStop`).
 */
import type {
  Engine,
  EngineEvent,
  EngineSessionOptions,
  EngineStopResult,
} from '../../src/engines/engine.ts'

export type StopBehaviour = 'settles' | 'never'
/** What the session's liveness probe answers: a connection state, `hang` (never), or `throw`. */
export type ProbeAnswer = string | 'hang' | 'throw'

export interface ScriptedSession {
  options: EngineSessionOptions
  started: boolean
  stopCalls: number
  /** True if the first stop asked the engine to log the device out (an unlink). */
  loggedOut: boolean
  /** True if the first stop asked for the forced phase only (fencing). */
  forced: boolean
  /** What its next probes answer (default `CONNECTED`). */
  probeAnswer: ProbeAnswer
  probeCalls: number
  /** Delivers an engine event, as the real engine would. */
  emit(event: EngineEvent): void
  /** Delivers an event even after stop, breaking the contract on purpose. */
  emitAfterStop(event: EngineEvent): void
}

export function createScriptedEngine(stopBehaviour: () => StopBehaviour = () => 'settles') {
  const sessions: ScriptedSession[] = []
  /** The campaigns whose saved login was deleted (`forgetLogin`), in order. */
  const forgotten: string[] = []
  const engine: Engine = {
    name: 'scripted',
    createSession(options) {
      let stopping: Promise<EngineStopResult> | undefined
      const session: ScriptedSession = {
        options,
        started: false,
        stopCalls: 0,
        loggedOut: false,
        forced: false,
        probeAnswer: 'CONNECTED',
        probeCalls: 0,
        emit(event) {
          if (!stopping) options.onEvent(event)
        },
        emitAfterStop(event) {
          options.onEvent(event)
        },
      }
      sessions.push(session)
      return {
        start() {
          session.started = true
        },
        stop(stopOptions) {
          session.stopCalls++
          if (!stopping) {
            session.loggedOut = stopOptions?.logout === true
            session.forced = stopOptions?.force === true
          }
          stopping ??=
            stopBehaviour() === 'settles'
              ? Promise.resolve({ forced: false, durationMs: 5 })
              : new Promise<EngineStopResult>(() => {})
          return stopping
        },
        probe() {
          session.probeCalls++
          const answer = session.probeAnswer
          if (answer === 'hang') return new Promise(() => {})
          if (answer === 'throw') return Promise.reject(new Error('Target closed'))
          return Promise.resolve({ state: answer })
        },
      }
    },
    forgetLogin: async (campaignId) => {
      forgotten.push(campaignId)
    },
    close: async () => {},
  }
  return {
    engine,
    sessions,
    forgotten,
    last(): ScriptedSession {
      const session = sessions.at(-1)
      if (!session) throw new Error('no engine session was created')
      return session
    },
  }
}
