/**
 * An engine decorator that remembers every session it created until its stop settles. The
 * supervisor uses it to stop the engine of a campaign actor that failed with a bug (whose own
 * cleanup could not run), and tests use it to prove that every engine started was stopped.
 *
 * @module
 */
import type { Engine, EngineSession } from './engine.ts'

export interface TrackedEngine extends Engine {
  /** Sessions created and not yet stopped. */
  liveSessionIds(): string[]
  /** Stops the engine session of `sessionId`, if it is still running. */
  stopSession(sessionId: string): void
}

export function trackEngine(engine: Engine): TrackedEngine {
  const live = new Map<string, EngineSession>()
  return {
    name: engine.name,
    createSession(options) {
      const session = engine.createSession(options)
      live.set(options.sessionId, session)
      return {
        start: () => session.start(),
        stop: () =>
          session.stop().finally(() => {
            if (live.get(options.sessionId) === session) live.delete(options.sessionId)
          }),
      }
    },
    liveSessionIds: () => [...live.keys()],
    stopSession(sessionId) {
      const session = live.get(sessionId)
      if (!session) return
      // Called for sessions whose actor failed; the engine may be the reason, so expect anything.
      Promise.resolve()
        .then(() => session.stop())
        .catch(() => undefined)
        .finally(() => live.delete(sessionId))
    },
    close: () => engine.close(),
  }
}
