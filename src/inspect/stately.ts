/**
 * Optional: the same XState inspection, forwarded to Stately's inspector through
 * `@statelyai/inspect` when `INSPECT_STATELY_URL` is set (a `ws://` or `wss://` relay, e.g. the
 * one `createInspectorServer()` from `@statelyai/inspect/server` runs on port 8080). Stately's UI
 * is a hosted web app, so this needs the internet; `/inspect` is the offline inspector.
 *
 * Unlike `/ws/inspect` it stays attached for as long as the service runs: a relay has no way to
 * say whether someone is looking. QR texts and tokens are hidden from what is sent.
 *
 * @module
 */
import type { InspectionEvent } from 'xstate'
import type { Logger } from '../logger.ts'
import { silentLogger } from '../logger.ts'
import { hideSecrets } from './redaction.ts'
import type { InspectableSessions } from './recorder.ts'

export interface StatelyForwarding {
  stop(): void
}

/**
 * Starts forwarding; throws at once if the URL is not a WebSocket URL.
 *
 * @example
 * const stately = config.inspectStatelyUrl
 *   ? await forwardToStately({ sessions, url: config.inspectStatelyUrl, logger })
 *   : undefined
 */
export async function forwardToStately({
  sessions,
  url,
  logger = silentLogger,
}: {
  sessions: InspectableSessions
  url: string
  logger?: Logger
}): Promise<StatelyForwarding> {
  if (!/^wss?:\/\/[^\s]+$/.test(url)) {
    throw new Error(`INSPECT_STATELY_URL must be a ws:// or wss:// URL (got "${url}").`)
  }
  const { createWebSocketInspector } = await import('@statelyai/inspect')
  const inspector = createWebSocketInspector({
    url,
    sanitizeContext: (context) => hideSecrets(context) as typeof context,
    sanitizeEvent: (event) => hideSecrets(event) as typeof event,
  })
  // Stately's inspector shows an actor only after its `@xstate.actor` event. An actor whose
  // inspection was attached after it was constructed never sends one: announce it first.
  const announced = new WeakSet<object>()
  const subscription = sessions.inspect((event: InspectionEvent) => {
    try {
      if (event.type !== '@xstate.actor' && !announced.has(event.actorRef)) {
        inspector.inspect.next?.({
          type: '@xstate.actor',
          actorRef: event.actorRef,
          rootId: event.rootId,
        } as InspectionEvent)
      }
      announced.add(event.actorRef)
      inspector.inspect.next?.(event)
    } catch (error) {
      logger.warn({ err: error }, 'stately inspector: an event could not be forwarded')
    }
  })
  logger.info({ url }, 'forwarding XState inspection to Stately')
  return {
    stop() {
      subscription.unsubscribe()
      inspector.stop()
    },
  }
}
