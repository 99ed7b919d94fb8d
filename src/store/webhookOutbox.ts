/**
 * The webhook outbox's records and the store's interface to them: endpoints (where events go)
 * and deliveries (one row per event and endpoint, pending until sent, kept a while after).
 *
 * The store keeps and orders; it does not send. `src/webhooks/` decides which events exist,
 * signs, sends and retries.
 *
 * @module
 */

export type DeliveryStatus = 'pending' | 'delivered' | 'failed' | 'cancelled'

export const DELIVERY_STATUSES: readonly DeliveryStatus[] = [
  'pending',
  'delivered',
  'failed',
  'cancelled',
]

/** The id of the service-wide endpoint (`WEBHOOK_URL`). */
export const SERVICE_ENDPOINT_ID = 'service'

export interface WebhookEndpointRecord {
  endpointId: string
  /** Null for the service-wide endpoint. */
  campaignId: string | null
  url: string
  events: string[]
  /** The `whsec_` secret; null for the service-wide endpoint (its secret is configuration). */
  secret: string | null
  createdAt: number
  disabledAt: number | null
  disabledReason: string | null
}

/** One event to deliver: the body is built once and sent as is on every attempt. */
export interface OutboxEvent {
  campaignId: string
  type: string
  /** The JSON body. */
  payload: string
}

export interface DeliveryRecord {
  /** Also the `webhook-id` header. */
  deliveryId: string
  endpointId: string
  campaignId: string
  type: string
  payload: string
  status: DeliveryStatus
  attempts: number
  lastError: string | null
  /** Epoch ms; meaningful while pending. */
  nextAttemptAt: number
  createdAt: number
  updatedAt: number
  deliveredAt: number | null
  /** Orders a campaign's deliveries to one endpoint (and pages listings). */
  position: number
}

export interface DeliveryQuery {
  /** Only deliveries to endpoints of campaigns this user owns (not the service-wide one). */
  owner?: string
  campaignId?: string
  endpointId?: string
  status?: DeliveryStatus
  /** Keyset paging, newest first: only deliveries older than this position. */
  before?: number
  /** At most this many (default and maximum: 1,000). */
  limit?: number
}

/** What a delivery attempt ended with. */
export type AttemptOutcome =
  | { kind: 'delivered' }
  /** Try again at `nextAttemptAt`. */
  | { kind: 'retry'; error: string; nextAttemptAt: number }
  /** Give up on this delivery (`failed`). */
  | { kind: 'failed'; error: string }
  /** The receiver said 410 Gone: disable its endpoint and cancel what is pending for it. */
  | { kind: 'gone'; error: string }

export interface OutboxDepth {
  pending: number
  failed: number
  /** Epoch ms of the oldest pending delivery's creation; null when none is pending. */
  oldestPendingAt: number | null
}

export interface WebhookOutbox {
  /**
   * Sets an endpoint. A new `endpointId` for a campaign replaces the campaign's previous endpoint
   * (what was pending for it is cancelled); an existing `endpointId` (the service-wide one, set
   * again at every start) is updated in place and re-enabled, keeping what is pending for it.
   */
  putEndpoint(endpoint: Omit<WebhookEndpointRecord, 'disabledAt' | 'disabledReason'>): Promise<void>
  /** Removes an endpoint; what was pending for it is cancelled. Resolves false if there was none. */
  removeEndpoint(endpointId: string): Promise<boolean>
  getEndpoint(endpointId: string): Promise<WebhookEndpointRecord | undefined>
  /** The campaign's own endpoint, if it has one. */
  campaignEndpoint(campaignId: string): Promise<WebhookEndpointRecord | undefined>
  /** Whether any endpoint (the service-wide one or a campaign's) is enabled. */
  hasEndpoints(): Promise<boolean>
  /**
   * Commits one delivery per enabled endpoint that takes the event's type (the service-wide one
   * and the campaign's own), in one transaction; durable when it resolves, with the new delivery
   * ids. Events enqueued by one process are ordered as the calls were made.
   */
  enqueue(event: OutboxEvent): Promise<string[]>
  /**
   * The deliveries that may be sent now: the head (oldest pending) of each lane (an endpoint and
   * a campaign), if it is due and not leased, oldest due first, skipping the lanes in `busy` and
   * the endpoints in `skipEndpoints` (those at their share of attempts in flight).
   */
  dueHeads(query: {
    limit: number
    busy: ReadonlySet<string>
    skipEndpoints?: readonly string[]
  }): Promise<DeliveryRecord[]>
  /** When the earliest lane head not yet due becomes due (epoch ms), or null if none. */
  nextDueAt(): Promise<number | null>
  /** Takes a delivery for one attempt until `until`; false if another worker holds it or it ended. */
  lease(deliveryId: string, until: number): Promise<boolean>
  /** Records how an attempt ended (counts it, clears the lease). */
  recordAttempt(deliveryId: string, outcome: AttemptOutcome): Promise<void>
  /** Frees a lease without counting an attempt (a worker stopping mid-attempt). */
  release(deliveryId: string): Promise<void>
  /** Sends a failed or cancelled delivery again (from attempt 0); false if it is not one. */
  retry(deliveryId: string): Promise<boolean>
  getDelivery(deliveryId: string): Promise<DeliveryRecord | undefined>
  /** Newest first. */
  listDeliveries(query?: DeliveryQuery): Promise<DeliveryRecord[]>
  depth(): Promise<OutboxDepth>
  /** Deletes ended deliveries last changed before `before` (epoch ms); resolves with how many. */
  pruneDeliveries(before: number): Promise<number>
}

/** The lane a delivery is ordered in: an endpoint and a campaign. */
export function laneOf(delivery: { endpointId: string; campaignId: string }): string {
  return `${delivery.endpointId}\u0000${delivery.campaignId}`
}
