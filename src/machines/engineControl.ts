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
import type { Engine, EngineEvent, EngineSession } from '../engines/engine.ts'
import type { CampaignEvent } from './campaignMachine.ts'

type Send = (event: CampaignEvent) => void

interface Running {
  session: EngineSession
  /** Set once stop has been requested: from then on, the engine's events are dropped. */
  stopping: boolean
}

export interface EngineControl {
  /** Starts the session's engine; its events are sent to the actor through `send`. */
  start(campaignId: string, sessionId: string, send: Send): void
  /** Stops it (if it ever started) and sends `ENGINE.STOPPED` once it is gone, never before. */
  stop(sessionId: string, send: Send): void
}

export function createEngineControl(engine: Engine): EngineControl {
  const running = new Map<string, Running>()

  return {
    start(campaignId, sessionId, send) {
      if (running.has(sessionId)) return
      const relay = (event: EngineEvent) => {
        if (running.get(sessionId)?.stopping !== false) return
        send(toMachineEvent(sessionId, event))
      }
      try {
        const session = engine.createSession({ campaignId, sessionId, onEvent: relay })
        running.set(sessionId, { session, stopping: false })
        session.start()
      } catch (error) {
        // An engine that throws on start broke its contract; for the session it is a failed start.
        const detail = error instanceof Error ? error.message : String(error)
        queueMicrotask(() =>
          send({ type: 'ENGINE.TERMINATED', sessionId, kind: 'start_failed', detail })
        )
      }
    },
    stop(sessionId, send) {
      const entry = running.get(sessionId)
      if (entry?.stopping) return
      if (entry) entry.stopping = true
      const stopped = entry
        ? entry.session.stop().catch(() => ({ forced: true, durationMs: 0 }))
        : Promise.resolve({ forced: false, durationMs: 0 })
      void stopped.then(({ forced, durationMs }) => {
        running.delete(sessionId)
        send({ type: 'ENGINE.STOPPED', sessionId, forced, durationMs })
      })
    },
  }
}

function toMachineEvent(sessionId: string, event: EngineEvent): CampaignEvent {
  switch (event.type) {
    case 'qr':
      return { type: 'ENGINE.QR_RECEIVED', sessionId, qr: event.qr }
    case 'authenticated':
      return { type: 'ENGINE.AUTHENTICATED', sessionId }
    case 'ready':
      return { type: 'ENGINE.READY', sessionId }
    case 'terminated':
      return { type: 'ENGINE.TERMINATED', sessionId, kind: event.kind, detail: event.detail }
  }
}
