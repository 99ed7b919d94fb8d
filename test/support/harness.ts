/**
 * A session service over the simulated engine, in simulated time (vitest's fake timers drive
 * `systemClock`, XState's delays and the engine alike).
 */
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { vi } from 'vitest'
import { systemClock } from '../../src/clock.ts'
import type { Engine } from '../../src/engines/engine.ts'
import { createSimulatedEngine, type SimulatedEngineOptions } from '../../src/engines/simulated.ts'
import type { SessionEvent } from '../../src/session/api.ts'
import {
  createSessionService,
  type SessionServiceOptions,
  type SessionTimeouts,
} from '../../src/session/service.ts'

export const TIMEOUTS: SessionTimeouts = {
  initMs: 30_000,
  scanMs: 30_000,
  authMs: 120_000,
  destroyMs: 10_000,
  killMs: 5_000,
}

export const alice = { userId: 'alice', admin: false }
export const bob = { userId: 'bob', admin: false }
export const admin = { userId: 'root', admin: true }

export interface HarnessOptions {
  engine?: SimulatedEngineOptions
  service?: Partial<Omit<SessionServiceOptions, 'engine'>>
  /** Use this engine instead of the simulated one (faulty engines in fault tests). */
  engineOverride?: Engine
}

export function createHarness(options: HarnessOptions = {}) {
  vi.useFakeTimers({ now: new Date('2026-01-01T12:00:00.000Z') })
  const simulated = createSimulatedEngine({
    clock: systemClock,
    destroyTimeoutMs: TIMEOUTS.destroyMs,
    killTimeoutMs: TIMEOUTS.killMs,
    ...options.engine,
  })
  // Error-level log lines, so a test fails when the supervisor had to swallow an error.
  const errors: string[] = []
  const logger = pino(
    { level: 'error' },
    new Writable({
      write(chunk, _encoding, done) {
        errors.push(String(chunk))
        done()
      },
    })
  )
  const sessions = createSessionService({
    engine: options.engineOverride ?? simulated,
    timeouts: TIMEOUTS,
    maxSessions: 1_000,
    logger,
    ...options.service,
  })
  return {
    engine: simulated,
    sessions,
    /** Error-level log lines written so far. */
    errors,
    /** Moves simulated time forward, running every timer and promise due on the way. */
    advance: (ms: number) => vi.advanceTimersByTimeAsync(ms),
    /** Collects a campaign's events. */
    record(campaignId: string) {
      const events: SessionEvent[] = []
      const subscription = sessions.subscribe({ campaignId }, (event) => events.push(event))
      return { events, unsubscribe: () => subscription?.unsubscribe() }
    },
    /** Shuts the service down in simulated time; reports the timers still pending after it. */
    async dispose() {
      let done = false
      const shutdown = sessions.shutdown().then(() => (done = true))
      for (let i = 0; i < 100 && !done; i++) await vi.advanceTimersByTimeAsync(1_000)
      await shutdown
      await simulated.close()
      const timersLeft = vi.getTimerCount()
      vi.useRealTimers()
      return { timersLeft, errors }
    },
  }
}
