/**
 * The events a webhook receives and their bodies: `{ "type", "timestamp", "data" }`, the shape the
 * Standard Webhooks specification recommends. The body is built once, when the event is
 * enqueued, and sent byte for byte the same on every attempt.
 *
 * @module
 */
import type { OutboxEvent } from '../store/index.ts'

export type WebhookEventType = 'session.status' | 'session.qr'

export const WEBHOOK_EVENT_TYPES: readonly WebhookEventType[] = ['session.status', 'session.qr']

/** What an endpoint gets when it names no events. `session.qr` is sent only on request. */
export const DEFAULT_WEBHOOK_EVENTS: readonly WebhookEventType[] = ['session.status']

/** Every status change of a session. */
export interface SessionStatusData {
  campaignId: string
  sessionId: string | null
  status: string
  reason: string | null
  detail: string | null
  /** Epoch ms of the change. */
  at: number
  /** Increases with every event of the campaign. */
  seq: number
}

/** A QR to scan. `qr` is the raw QR text: whoever holds it can link the session to their phone. */
export interface SessionQrData {
  campaignId: string
  sessionId: string | null
  qr: string
  attempt: number
  /** Epoch ms when this QR stops being accepted. */
  expiresAt: number
  at: number
  seq: number
}

export type WebhookEvent =
  { type: 'session.status'; data: SessionStatusData } | { type: 'session.qr'; data: SessionQrData }

/** The outbox entry for an event: its campaign, its type and the exact body to send. */
export function toOutboxEvent(event: WebhookEvent): OutboxEvent {
  return {
    campaignId: event.data.campaignId,
    type: event.type,
    payload: JSON.stringify({
      type: event.type,
      timestamp: new Date(event.data.at).toISOString(),
      data: event.data,
    }),
  }
}

/**
 * Parses an event list (`WEBHOOK_EVENTS`, or a request's `events`): the default when empty;
 * throws on an unknown name, listing the known ones.
 */
export function parseWebhookEvents(events: readonly string[] | undefined): WebhookEventType[] {
  if (events === undefined || events.length === 0) return [...DEFAULT_WEBHOOK_EVENTS]
  const unknown = events.filter((name) => !WEBHOOK_EVENT_TYPES.includes(name as WebhookEventType))
  if (unknown.length > 0) {
    throw new Error(
      `unknown webhook event ${unknown.join(', ')}; the events are ${WEBHOOK_EVENT_TYPES.join(', ')}`
    )
  }
  return [...new Set(events as WebhookEventType[])]
}
