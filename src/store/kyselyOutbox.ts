/**
 * The webhook outbox over the store's `Kysely<Database>`. Enqueued events are committed in
 * groups, one group at a time and in call order: a burst of events costs a few commits, and the
 * positions (which order each lane) follow the order the events were enqueued in, even on
 * PostgreSQL where concurrent transactions could otherwise commit out of order.
 *
 * @module
 */
import type { Kysely } from 'kysely'
import type { Clock } from '../clock.ts'
import type { Database } from './schema.ts'
import type { OutboxEvent, WebhookOutbox } from './webhookOutbox.ts'
import {
  dueHeads,
  findDelivery,
  findEndpoint,
  hasEnabledEndpoints,
  insertDeliveries,
  leaseDelivery,
  listDeliveries,
  nextDueAt,
  outboxDepth,
  pruneDeliveries,
  putEndpoint,
  recordAttempt,
  releaseDelivery,
  removeEndpoint,
  retryDelivery,
} from './webhookQueries.ts'

/** Events per enqueue transaction. */
const MAX_EVENTS_PER_COMMIT = 500
/** Deliveries deleted per pruning statement. */
const PRUNE_CHUNK = 500

interface Waiting {
  event: OutboxEvent
  resolve(ids: string[]): void
  reject(error: unknown): void
}

export interface KyselyOutbox extends WebhookOutbox {
  /** Resolves once every event enqueued so far is committed (or refused). */
  idle(): Promise<void>
}

export function createKyselyOutbox(
  db: Kysely<Database>,
  clock: Clock,
  assertOpen: () => void
): KyselyOutbox {
  const waiting: Waiting[] = []
  let committing: Promise<void> | undefined

  function kick(): void {
    if (committing || waiting.length === 0) return
    committing = (async () => {
      // Let the events of the rest of this tick join the group.
      await Promise.resolve()
      while (waiting.length > 0) {
        const group = waiting.splice(0, MAX_EVENTS_PER_COMMIT)
        try {
          const ids = await db.transaction().execute((trx) =>
            insertDeliveries(
              trx,
              group.map((item) => item.event),
              clock.now()
            )
          )
          group.forEach((item, index) => item.resolve(ids[index]!))
        } catch (error) {
          for (const item of group) item.reject(error)
        }
      }
    })().finally(() => {
      committing = undefined
      kick()
    })
  }

  return {
    enqueue(event) {
      return new Promise((resolve, reject) => {
        assertOpen()
        waiting.push({ event, resolve, reject })
        kick()
      })
    },

    async idle() {
      while (committing) await committing
    },

    async putEndpoint(endpoint) {
      assertOpen()
      await putEndpoint(db, endpoint, clock.now())
    },

    removeEndpoint(endpointId) {
      assertOpen()
      return removeEndpoint(db, endpointId, clock.now())
    },

    getEndpoint(endpointId) {
      assertOpen()
      return findEndpoint(db, { endpointId })
    },

    campaignEndpoint(campaignId) {
      assertOpen()
      return findEndpoint(db, { campaignId })
    },

    hasEndpoints() {
      assertOpen()
      return hasEnabledEndpoints(db)
    },

    dueHeads({ limit, busy, skipEndpoints = [] }) {
      assertOpen()
      return dueHeads(db, clock.now(), limit, busy, skipEndpoints)
    },

    nextDueAt() {
      assertOpen()
      return nextDueAt(db, clock.now())
    },

    lease(deliveryId, until) {
      assertOpen()
      return leaseDelivery(db, deliveryId, until, clock.now())
    },

    recordAttempt(deliveryId, outcome) {
      assertOpen()
      return recordAttempt(db, deliveryId, outcome, clock.now())
    },

    release(deliveryId) {
      assertOpen()
      return releaseDelivery(db, deliveryId)
    },

    retry(deliveryId) {
      assertOpen()
      return retryDelivery(db, deliveryId, clock.now())
    },

    getDelivery(deliveryId) {
      assertOpen()
      return findDelivery(db, deliveryId)
    },

    listDeliveries(query = {}) {
      assertOpen()
      return listDeliveries(db, query)
    },

    depth() {
      assertOpen()
      return outboxDepth(db)
    },

    async pruneDeliveries(before) {
      assertOpen()
      let deleted = 0
      for (;;) {
        const count = await pruneDeliveries(db, before, PRUNE_CHUNK)
        deleted += count
        if (count < PRUNE_CHUNK) return deleted
      }
    },
  }
}
