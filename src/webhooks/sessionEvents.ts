/**
 * What the sessions say, as webhook events: every status change as `session.status`, every QR as
 * `session.qr` (endpoints that ask for it only), committed to the outbox as they happen.
 *
 * A campaign's events are committed one after the other, in `seq` order, so its deliveries are
 * ordered as its events were (on PostgreSQL, concurrent inserts from a pool could commit out of
 * order). Commits wait at most `maxPending` deep in all: past it, while the store does not keep
 * up or fails, events are dropped with a warning (counted in `dropped`) rather than held in
 * memory without bound.
 *
 * @module
 */
import type { Logger } from '../logger.ts'
import type { CampaignView, SessionEvent, Subscription } from '../session/api.ts'
import type { WebhookEvent } from './events.ts'
import type { Webhooks } from './webhooks.ts'

export interface SessionEventSource {
  /** Every event of every campaign, without replay. */
  observe(listener: (event: SessionEvent) => void): Subscription
  getCampaign(campaignId: string): CampaignView
}

export interface SessionEventForwarding extends Subscription {
  /**
   * Commits an event no session of this node says, in its campaign's order: in a cluster, the end
   * of a session lost with its node (`detail`: a failure status's, as its history keeps it).
   */
  tell(event: SessionEvent, detail: string | null): void
  /** Events not committed because `maxPending` were waiting already. */
  readonly dropped: number
  /** Resolves once every event observed so far is committed (or failed). */
  settled(): Promise<void>
}

export function forwardSessionEvents({
  sessions,
  webhooks,
  logger,
  maxPending = 10_000,
}: {
  sessions: SessionEventSource
  webhooks: Pick<Webhooks, 'emit'>
  logger: Logger
  maxPending?: number
}): SessionEventForwarding {
  /** The last commit of each campaign with commits in flight; the next one waits for it. */
  const tails = new Map<string, Promise<void>>()
  let pending = 0
  let dropped = 0

  const commit = (event: WebhookEvent) => {
    if (pending >= maxPending) {
      dropped++
      if (dropped === 1 || dropped % 1000 === 0) {
        logger.warn({ dropped }, 'webhooks: the store does not keep up; events dropped')
      }
      return
    }
    pending++
    const { campaignId } = event.data
    const previous = tails.get(campaignId) ?? Promise.resolve()
    const next = previous
      .then(() => webhooks.emit(event))
      .then(
        () => undefined,
        (error: unknown) =>
          logger.error(
            { err: error, campaignId, type: event.type },
            'webhooks: event not committed'
          )
      )
      .finally(() => {
        pending--
        if (tails.get(campaignId) === next) tails.delete(campaignId)
      })
    tails.set(campaignId, next)
  }

  const forward = (
    event: SessionEvent,
    detailOfStatus: (event: SessionEvent & { type: 'status' }) => string | null
  ) => {
    const base = {
      campaignId: event.campaignId,
      sessionId: event.sessionId,
      at: event.at,
      seq: event.seq,
    }
    if (event.type === 'status') {
      commit({
        type: 'session.status',
        data: {
          ...base,
          status: event.status,
          reason: event.reason,
          detail: detailOfStatus(event),
        },
      })
    } else if (event.type === 'qr') {
      commit({
        type: 'session.qr',
        data: { ...base, qr: event.qr, attempt: event.attempt, expiresAt: event.expiresAt },
      })
    }
  }

  const subscription = sessions.observe((event) =>
    forward(event, (status) => detailOf(sessions.getCampaign(status.campaignId), status))
  )

  return {
    tell: (event, detail) => forward(event, () => detail),
    get dropped() {
      return dropped
    },
    async settled() {
      while (tails.size > 0) await Promise.all(tails.values())
    },
    unsubscribe: () => subscription.unsubscribe(),
  }
}

/** The detail the history keeps with this status change, if the view shows the same session. */
function detailOf(view: CampaignView, event: SessionEvent & { type: 'status' }): string | null {
  if (view.sessionId !== event.sessionId) return null
  const last = view.history.at(-1)
  return last && last.status === event.status ? (last.detail ?? null) : null
}
