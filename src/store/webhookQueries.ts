/**
 * Every query of the webhook outbox, written once for SQLite and PostgreSQL. Plain functions of a
 * `Kysely<Database>` (or of a transaction: `insertDeliveries` is meant to run inside the
 * transaction of the change that caused the event); the outbox's lifecycle is in
 * `kyselyOutbox.ts`.
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import { sql, type Kysely, type Selectable } from 'kysely'
import type { Database, WebhookDeliveriesTable, WebhookEndpointsTable } from './schema.ts'
import type {
  AttemptOutcome,
  DeliveryQuery,
  DeliveryRecord,
  DeliveryStatus,
  OutboxDepth,
  OutboxEvent,
  WebhookEndpointRecord,
} from './webhookOutbox.ts'
import { laneOf } from './webhookOutbox.ts'

/** Deliveries per page of `listDeliveries`, at most. */
export const MAX_DELIVERY_PAGE = 1_000

/** A new delivery id (the `webhook-id` header): `msg_` and 32 hex digits. */
export function newDeliveryId(): string {
  return `msg_${randomUUID().replaceAll('-', '')}`
}

export async function putEndpoint(
  db: Kysely<Database>,
  endpoint: Omit<WebhookEndpointRecord, 'disabledAt' | 'disabledReason'>,
  now: number
): Promise<void> {
  await db.transaction().execute(async (trx) => {
    if (endpoint.campaignId !== null) {
      const previous = await trx
        .selectFrom('webhook_endpoints')
        .select('endpoint_id')
        .where('campaign_id', '=', endpoint.campaignId)
        .where('endpoint_id', '!=', endpoint.endpointId)
        .executeTakeFirst()
      if (previous) await deleteEndpoint(trx, previous.endpoint_id, now)
    }
    await trx
      .insertInto('webhook_endpoints')
      .values({
        endpoint_id: endpoint.endpointId,
        campaign_id: endpoint.campaignId,
        url: endpoint.url,
        events: JSON.stringify(endpoint.events),
        secret: endpoint.secret,
        created_at: endpoint.createdAt,
        disabled_at: null,
        disabled_reason: null,
      })
      .onConflict((conflict) =>
        conflict.column('endpoint_id').doUpdateSet((eb) => ({
          url: eb.ref('excluded.url'),
          events: eb.ref('excluded.events'),
          secret: eb.ref('excluded.secret'),
          disabled_at: null,
          disabled_reason: null,
        }))
      )
      .execute()
  })
}

/** Deletes an endpoint and cancels what was pending for it; false if there was none. */
export async function removeEndpoint(
  db: Kysely<Database>,
  endpointId: string,
  now: number
): Promise<boolean> {
  return db.transaction().execute((trx) => deleteEndpoint(trx, endpointId, now))
}

async function deleteEndpoint(db: Kysely<Database>, endpointId: string, now: number) {
  await cancelPending(db, endpointId, 'its endpoint was removed', now)
  const result = await db
    .deleteFrom('webhook_endpoints')
    .where('endpoint_id', '=', endpointId)
    .executeTakeFirst()
  return Number(result.numDeletedRows) > 0
}

async function cancelPending(db: Kysely<Database>, endpointId: string, why: string, now: number) {
  await db
    .updateTable('webhook_deliveries')
    .set({ status: 'cancelled', last_error: why, lease_until: null, updated_at: now })
    .where('endpoint_id', '=', endpointId)
    .where('status', '=', 'pending')
    .execute()
}

export async function hasEnabledEndpoints(db: Kysely<Database>): Promise<boolean> {
  const row = await db
    .selectFrom('webhook_endpoints')
    .select('endpoint_id')
    .where('disabled_at', 'is', null)
    .limit(1)
    .executeTakeFirst()
  return row !== undefined
}

export async function findEndpoint(
  db: Kysely<Database>,
  where: { endpointId: string } | { campaignId: string }
): Promise<WebhookEndpointRecord | undefined> {
  const row = await db
    .selectFrom('webhook_endpoints')
    .selectAll()
    .$call((query) =>
      'endpointId' in where
        ? query.where('endpoint_id', '=', where.endpointId)
        : query.where('campaign_id', '=', where.campaignId)
    )
    .executeTakeFirst()
  return row && toEndpointRecord(row)
}

/**
 * Inserts one pending delivery per enabled endpoint taking each event's type (the service-wide
 * endpoint and the event's campaign's own), in the events' order; resolves with the new ids, per
 * event. Runs in the caller's transaction, if it is given one.
 */
export async function insertDeliveries(
  db: Kysely<Database>,
  events: OutboxEvent[],
  now: number
): Promise<string[][]> {
  if (events.length === 0) return []
  const campaignIds = [...new Set(events.map((event) => event.campaignId))]
  const endpoints = (
    await db
      .selectFrom('webhook_endpoints')
      .selectAll()
      .where('disabled_at', 'is', null)
      .where((eb) => eb.or([eb('campaign_id', 'is', null), eb('campaign_id', 'in', campaignIds)]))
      .orderBy('endpoint_id')
      .execute()
  ).map(toEndpointRecord)
  const ids: string[][] = []
  const rows: Array<Omit<Selectable<WebhookDeliveriesTable>, 'position'>> = []
  for (const event of events) {
    const eventIds: string[] = []
    for (const endpoint of endpoints) {
      if (endpoint.campaignId !== null && endpoint.campaignId !== event.campaignId) continue
      if (!endpoint.events.includes(event.type)) continue
      const deliveryId = newDeliveryId()
      eventIds.push(deliveryId)
      rows.push({
        delivery_id: deliveryId,
        endpoint_id: endpoint.endpointId,
        campaign_id: event.campaignId,
        type: event.type,
        payload: event.payload,
        status: 'pending',
        attempts: 0,
        last_error: null,
        next_attempt_at: now,
        lease_until: null,
        created_at: now,
        updated_at: now,
        delivered_at: null,
      })
    }
    ids.push(eventIds)
  }
  // Rows in the order given: the position (an auto-increment) keeps it.
  for (let start = 0; start < rows.length; start += 200) {
    await db
      .insertInto('webhook_deliveries')
      .values(rows.slice(start, start + 200))
      .execute()
  }
  return ids
}

/** The oldest pending delivery of each lane (an endpoint and a campaign). */
function laneHeads(db: Kysely<Database>) {
  return db
    .selectFrom('webhook_deliveries as d')
    .innerJoin(
      (eb) =>
        eb
          .selectFrom('webhook_deliveries')
          .select((eb) => eb.fn.min('position').as('head'))
          .where('status', '=', 'pending')
          .groupBy(['endpoint_id', 'campaign_id'])
          .as('h'),
      (join) => join.onRef('d.position', '=', 'h.head')
    )
    .selectAll('d')
}

export async function dueHeads(
  db: Kysely<Database>,
  now: number,
  limit: number,
  busy: ReadonlySet<string>,
  skipEndpoints: readonly string[]
): Promise<DeliveryRecord[]> {
  // Due pending deliveries in the order they became due, keeping those with no older pending
  // delivery in their lane: read through the due index, this stops after `limit` heads instead of
  // grouping every pending row at each look.
  const rows = await db
    .selectFrom('webhook_deliveries as d')
    .selectAll('d')
    .where('d.status', '=', 'pending')
    .where('d.next_attempt_at', '<=', now)
    .where((eb) => eb.or([eb('d.lease_until', 'is', null), eb('d.lease_until', '<=', now)]))
    .$if(skipEndpoints.length > 0, (query) => query.where('d.endpoint_id', 'not in', skipEndpoints))
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('webhook_deliveries as older')
            .select('older.position')
            .where('older.status', '=', 'pending')
            .whereRef('older.endpoint_id', '=', 'd.endpoint_id')
            .whereRef('older.campaign_id', '=', 'd.campaign_id')
            .whereRef('older.position', '<', 'd.position')
        )
      )
    )
    .orderBy('d.next_attempt_at')
    .orderBy('d.position')
    .limit(limit + busy.size)
    .execute()
  return rows
    .map(toDeliveryRecord)
    .filter((delivery) => !busy.has(laneOf(delivery)))
    .slice(0, limit)
}

export async function nextDueAt(db: Kysely<Database>, now: number): Promise<number | null> {
  // A leased head becomes due again when its lease expires (its worker died mid-attempt).
  const row = await laneHeads(db)
    .clearSelect()
    .select((eb) =>
      eb.fn
        .min(
          eb
            .case()
            .when('d.lease_until', '>', now)
            .then(eb.ref('d.lease_until'))
            .else(eb.ref('d.next_attempt_at'))
            .end()
        )
        .as('due')
    )
    .executeTakeFirst()
  return row?.due === null || row?.due === undefined ? null : Number(row.due)
}

export async function leaseDelivery(
  db: Kysely<Database>,
  deliveryId: string,
  until: number,
  now: number
): Promise<boolean> {
  const result = await db
    .updateTable('webhook_deliveries')
    .set({ lease_until: until })
    .where('delivery_id', '=', deliveryId)
    .where('status', '=', 'pending')
    .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<=', now)]))
    .executeTakeFirst()
  return Number(result.numUpdatedRows) === 1
}

export async function recordAttempt(
  db: Kysely<Database>,
  deliveryId: string,
  outcome: AttemptOutcome,
  now: number
): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const counted = {
      attempts: sql<number>`attempts + 1`,
      lease_until: null,
      updated_at: now,
    }
    const update = trx
      .updateTable('webhook_deliveries')
      .where('delivery_id', '=', deliveryId)
      .where('status', '=', 'pending')
    switch (outcome.kind) {
      case 'delivered':
        await update
          .set({ ...counted, status: 'delivered', last_error: null, delivered_at: now })
          .execute()
        return
      case 'retry':
        await update
          .set({ ...counted, last_error: outcome.error, next_attempt_at: outcome.nextAttemptAt })
          .execute()
        return
      case 'failed':
        await update.set({ ...counted, status: 'failed', last_error: outcome.error }).execute()
        return
      case 'gone': {
        const row = await update
          .set({ ...counted, status: 'failed', last_error: outcome.error })
          .returning('endpoint_id')
          .executeTakeFirst()
        if (!row) return
        await trx
          .updateTable('webhook_endpoints')
          .set({ disabled_at: now, disabled_reason: outcome.error })
          .where('endpoint_id', '=', row.endpoint_id)
          .execute()
        await cancelPending(
          trx,
          row.endpoint_id,
          `its endpoint was disabled: ${outcome.error}`,
          now
        )
      }
    }
  })
}

export async function releaseDelivery(db: Kysely<Database>, deliveryId: string): Promise<void> {
  await db
    .updateTable('webhook_deliveries')
    .set({ lease_until: null })
    .where('delivery_id', '=', deliveryId)
    .execute()
}

export async function retryDelivery(
  db: Kysely<Database>,
  deliveryId: string,
  now: number
): Promise<boolean> {
  const result = await db
    .updateTable('webhook_deliveries')
    .set({
      status: 'pending',
      attempts: 0,
      next_attempt_at: now,
      lease_until: null,
      updated_at: now,
    })
    .where('delivery_id', '=', deliveryId)
    .where('status', 'in', ['failed', 'cancelled'])
    // Its endpoint must still exist and take deliveries.
    .where(({ exists, selectFrom }) =>
      exists(
        selectFrom('webhook_endpoints as e')
          .select('e.endpoint_id')
          .whereRef('e.endpoint_id', '=', 'webhook_deliveries.endpoint_id')
          .where('e.disabled_at', 'is', null)
      )
    )
    .executeTakeFirst()
  return Number(result.numUpdatedRows) === 1
}

export async function findDelivery(
  db: Kysely<Database>,
  deliveryId: string
): Promise<DeliveryRecord | undefined> {
  const row = await db
    .selectFrom('webhook_deliveries')
    .selectAll()
    .where('delivery_id', '=', deliveryId)
    .executeTakeFirst()
  return row && toDeliveryRecord(row)
}

export async function listDeliveries(
  db: Kysely<Database>,
  { owner, campaignId, endpointId, status, before, limit = MAX_DELIVERY_PAGE }: DeliveryQuery
): Promise<DeliveryRecord[]> {
  let query = db.selectFrom('webhook_deliveries as d').selectAll('d')
  if (owner !== undefined) {
    query = query.where(({ exists, selectFrom }) =>
      exists(
        selectFrom('webhook_endpoints as e')
          .innerJoin('campaigns as c', 'c.campaign_id', 'e.campaign_id')
          .select('e.endpoint_id')
          .whereRef('e.endpoint_id', '=', 'd.endpoint_id')
          .where('c.owner', '=', owner)
      )
    )
  }
  if (campaignId !== undefined) query = query.where('d.campaign_id', '=', campaignId)
  if (endpointId !== undefined) query = query.where('d.endpoint_id', '=', endpointId)
  if (status !== undefined) query = query.where('d.status', '=', status)
  if (before !== undefined) query = query.where('d.position', '<', before)
  const rows = await query
    .orderBy('d.position', 'desc')
    .limit(Math.max(1, Math.min(limit, MAX_DELIVERY_PAGE)))
    .execute()
  return rows.map(toDeliveryRecord)
}

export async function outboxDepth(db: Kysely<Database>): Promise<OutboxDepth> {
  const rows = await db
    .selectFrom('webhook_deliveries')
    .select((eb) => [
      'status',
      eb.fn.countAll<number>().as('count'),
      eb.fn.min('created_at').as('oldest'),
    ])
    .where('status', 'in', ['pending', 'failed'])
    .groupBy('status')
    .execute()
  const depth: OutboxDepth = { pending: 0, failed: 0, oldestPendingAt: null }
  for (const row of rows) {
    if (row.status === 'pending') {
      depth.pending = Number(row.count)
      depth.oldestPendingAt = row.oldest === null ? null : Number(row.oldest)
    } else {
      depth.failed = Number(row.count)
    }
  }
  return depth
}

export async function pruneDeliveries(
  db: Kysely<Database>,
  before: number,
  limit: number
): Promise<number> {
  const result = await db
    .deleteFrom('webhook_deliveries')
    .where('position', 'in', (eb) =>
      eb
        .selectFrom('webhook_deliveries')
        .select('position')
        .where('status', '!=', 'pending')
        .where('updated_at', '<', before)
        .limit(limit)
    )
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}

function toEndpointRecord(row: Selectable<WebhookEndpointsTable>): WebhookEndpointRecord {
  return {
    endpointId: row.endpoint_id,
    campaignId: row.campaign_id,
    url: row.url,
    events: JSON.parse(row.events) as string[],
    secret: row.secret,
    createdAt: Number(row.created_at),
    disabledAt: row.disabled_at === null ? null : Number(row.disabled_at),
    disabledReason: row.disabled_reason,
  }
}

function toDeliveryRecord(row: Selectable<WebhookDeliveriesTable>): DeliveryRecord {
  return {
    deliveryId: row.delivery_id,
    endpointId: row.endpoint_id,
    campaignId: row.campaign_id,
    type: row.type,
    payload: row.payload,
    status: row.status as DeliveryStatus,
    attempts: Number(row.attempts),
    lastError: row.last_error,
    nextAttemptAt: Number(row.next_attempt_at),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    deliveredAt: row.delivered_at === null ? null : Number(row.delivered_at),
    position: Number(row.position),
  }
}
