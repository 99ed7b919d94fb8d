/**
 * The session event bus: subscribers to a campaign or to one session, observers of every event
 * of this node's own sessions (metrics, the store, webhooks), and the `seq` that orders every
 * message. A new subscriber first gets a replay of the current state; a listener's bug never
 * reaches the session or the other listeners.
 *
 * @module
 */
import type { CampaignView, SessionEvent, Subscription } from './api.ts'
import type { SessionFailure } from './status.ts'

export type SessionListener = (event: SessionEvent) => void

export class SessionEventBus {
  private seq = 0
  private readonly campaignListeners = new Map<string, Set<SessionListener>>()
  private readonly sessionListeners = new Map<string, Set<SessionListener>>()
  private readonly observers = new Set<SessionListener>()

  /** `onListenerError` is told when a listener throws (the others still get the event). */
  constructor(private readonly onListenerError?: (error: unknown) => void) {}

  /** The `seq` of the next message. */
  nextSeq(): number {
    return ++this.seq
  }

  /** Campaigns and sessions with at least one subscriber (tests prove nothing is left). */
  get subscribedKeys(): number {
    return this.campaignListeners.size + this.sessionListeners.size
  }

  /** Delivers an event to the observers and to the subscribers of its campaign and session. */
  publish(event: SessionEvent): void {
    for (const listener of this.observers) this.deliver(listener, event)
    this.relay(event)
  }

  /**
   * Delivers an event to the subscribers of its campaign and session only: an event of a session
   * that runs on another node. The observers (the store, metrics, webhooks, the publishing to the
   * other nodes) are that node's business: told here, they would write, count, deliver and send
   * it a second time.
   */
  relay(event: SessionEvent): void {
    const byCampaign = this.campaignListeners.get(event.campaignId)
    if (byCampaign) for (const listener of byCampaign) this.deliver(listener, event)
    const bySession =
      event.sessionId === null ? undefined : this.sessionListeners.get(event.sessionId)
    if (bySession) for (const listener of bySession) this.deliver(listener, event)
  }

  /** Subscribes to a campaign's events, after a replay of `view`. */
  subscribeToCampaign(
    view: CampaignView,
    failure: SessionFailure | undefined,
    listener: SessionListener,
    at: number
  ): Subscription {
    this.replay(view, failure, listener, at)
    return addListener(this.campaignListeners, view.campaignId, listener)
  }

  /** Subscribes to one session's events, after a replay of `view` (that session's). */
  subscribeToSession(
    sessionId: string,
    view: CampaignView,
    failure: SessionFailure | undefined,
    listener: SessionListener,
    at: number
  ): Subscription {
    this.replay(view, failure, listener, at)
    return addListener(this.sessionListeners, sessionId, listener)
  }

  /** Sees every event of the sessions this node runs, without replay (metrics, store, webhooks). */
  observe(listener: SessionListener): Subscription {
    this.observers.add(listener)
    return { unsubscribe: () => this.observers.delete(listener) }
  }

  /**
   * `subscribed`, then the QR if one is shown, `ready` if the session is, or the `error` it
   * ended with (`failure`).
   */
  private replay(
    view: CampaignView,
    failure: SessionFailure | undefined,
    listener: SessionListener,
    at: number
  ): void {
    const base = { campaignId: view.campaignId, sessionId: view.sessionId, at }
    const send = (event: SessionEvent) => this.deliver(listener, event)
    send({
      ...base,
      seq: this.nextSeq(),
      type: 'subscribed',
      status: view.status,
      reason: view.reason,
      isConnected: view.isConnected,
      hasActiveSession: view.hasActiveSession,
      node: view.node,
    })
    if (view.qr) {
      send({ ...base, seq: this.nextSeq(), type: 'qr', ...view.qr })
    } else if (view.pairingCode) {
      send({ ...base, seq: this.nextSeq(), type: 'pairing_code', ...view.pairingCode })
    } else if (view.status === 'ready') {
      send({ ...base, seq: this.nextSeq(), type: 'ready' })
    } else if (!view.hasActiveSession && view.sessionId && failure) {
      send({ ...base, seq: this.nextSeq(), type: 'error', ...failure })
    }
  }

  private deliver(listener: SessionListener, event: SessionEvent): void {
    try {
      listener(event)
    } catch (error) {
      this.onListenerError?.(error)
    }
  }
}

function addListener(
  index: Map<string, Set<SessionListener>>,
  key: string,
  listener: SessionListener
): Subscription {
  let listeners = index.get(key)
  if (!listeners) {
    listeners = new Set()
    index.set(key, listeners)
  }
  listeners.add(listener)
  return {
    unsubscribe() {
      const current = index.get(key)
      if (!current) return
      current.delete(listener)
      if (current.size === 0) index.delete(key)
    },
  }
}
