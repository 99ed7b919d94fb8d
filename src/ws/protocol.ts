/**
 * The WebSocket protocol of the contract: what clients may send (parsed and validated here) and
 * what the server sends (built here from session events). Every server message carries
 * `campaignId`, `sessionId`, `seq` and `at` (ISO); replies that are not part of a campaign's
 * stream (`pong`, and errors about the request itself) carry `seq: null`.
 *
 * @module
 */
import { z } from 'zod'
import {
  CAMPAIGN_ID_PATTERN,
  type SessionEvent,
  type SessionReason,
  type SessionStatus,
  type SubscriptionTarget,
} from '../session/api.ts'

export type ClientMessage =
  | { type: 'subscribe'; target: SubscriptionTarget }
  | { type: 'unsubscribe'; target: SubscriptionTarget }
  | { type: 'ping' }

/** The error codes a socket may receive. */
export type WsErrorCode = SessionReason | 'unknown_session' | 'forbidden' | 'bad_message'

interface Envelope {
  campaignId: string | null
  sessionId: string | null
  seq: number | null
  at: string
}

export type ServerMessage = Envelope &
  (
    | {
        type: 'subscribed' | 'status'
        status: SessionStatus
        reason: SessionReason | null
        isConnected: boolean
        /** The status holds (or is starting) an engine: `initializing` to `ready`. */
        hasActiveSession: boolean
        /** In a cluster, the node that runs (or ran) the session; null outside one. */
        node: string | null
      }
    | { type: 'qr_code'; qrCode: string | null; qr: string; expiresAt: string; attempt: number }
    /** Linking with a phone number: the code to type on the phone (a renewal replaces it). */
    | { type: 'pairing_code'; code: string; expiresAt: string }
    | { type: 'ready' }
    | {
        type: 'error'
        code: WsErrorCode
        message: string
        /** A session's outcome only: what the engine said, with a hint (null if it said nothing). */
        detail?: string | null
      }
    | { type: 'pong' }
  )

/** Session ids are UUIDs; anything in this alphabet is looked up, the rest is a bad message. */
const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/

const subscriptionMessage = z.strictObject({
  type: z.enum(['subscribe', 'unsubscribe']),
  sessionId: z.string().regex(SESSION_ID_PATTERN).optional(),
  campaignId: z.string().regex(CAMPAIGN_ID_PATTERN).optional(),
})

/**
 * Parses one text frame. Never throws.
 *
 * @example
 * parseClientMessage('{"type":"subscribe","sessionId":"0b6f…"}')
 * // { ok: true, message: { type: 'subscribe', target: { sessionId: '0b6f…' } } }
 */
export function parseClientMessage(
  text: string
): { ok: true; message: ClientMessage } | { ok: false; reason: string } {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return { ok: false, reason: 'The message is not valid JSON.' }
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return { ok: false, reason: 'The message must be a JSON object with a "type".' }
  }
  const type = (json as { type?: unknown }).type
  if (type !== 'subscribe' && type !== 'unsubscribe' && type !== 'ping') {
    return {
      ok: false,
      reason: 'Unknown message type; use subscribe, unsubscribe or ping.',
    }
  }
  if (type === 'ping') return { ok: true, message: { type: 'ping' } }
  const parsed = subscriptionMessage.safeParse(json)
  const { sessionId, campaignId } = parsed.success ? parsed.data : {}
  if ((sessionId === undefined) === (campaignId === undefined)) {
    return {
      ok: false,
      reason:
        `A ${type} message needs exactly one of "sessionId" or "campaignId" ` +
        '(a campaign id is 1 to 64 letters, digits, "_" or "-"), and nothing else.',
    }
  }
  const subscriptionTarget: SubscriptionTarget =
    sessionId !== undefined ? { sessionId } : { campaignId: campaignId as string }
  return { ok: true, message: { type, target: subscriptionTarget } }
}

const iso = (epochMs: number) => new Date(epochMs).toISOString()

/**
 * The message for a session event; a `qr` event becomes `qr_code` with its rendered image.
 *
 * @example
 * toServerMessage(event, image) // { type: 'qr_code', qrCode: 'data:image/png;base64,…', … }
 */
export function toServerMessage(event: SessionEvent, qrImage: string | null = null): ServerMessage {
  const envelope: Envelope = {
    campaignId: event.campaignId,
    sessionId: event.sessionId,
    seq: event.seq,
    at: iso(event.at),
  }
  switch (event.type) {
    case 'subscribed':
    case 'status':
      return {
        type: event.type,
        ...envelope,
        status: event.status,
        reason: event.reason,
        isConnected: event.isConnected,
        hasActiveSession: event.hasActiveSession,
        node: event.node,
      }
    case 'qr':
      return {
        type: 'qr_code',
        ...envelope,
        qrCode: qrImage,
        qr: event.qr,
        expiresAt: iso(event.expiresAt),
        attempt: event.attempt,
      }
    case 'pairing_code':
      return {
        type: 'pairing_code',
        ...envelope,
        code: event.code,
        expiresAt: iso(event.expiresAt),
      }
    case 'ready':
      return { type: 'ready', ...envelope }
    case 'error':
      return {
        type: 'error',
        ...envelope,
        code: event.code,
        message: event.message,
        detail: event.detail,
      }
  }
}

/** A reply about the request itself rather than a campaign's stream. */
export function protocolError(
  code: WsErrorCode,
  message: string,
  about: { campaignId?: string; sessionId?: string } = {},
  now = Date.now()
): ServerMessage {
  return {
    type: 'error',
    campaignId: about.campaignId ?? null,
    sessionId: about.sessionId ?? null,
    seq: null,
    at: iso(now),
    code,
    message,
  }
}

export function pong(now = Date.now()): ServerMessage {
  return { type: 'pong', campaignId: null, sessionId: null, seq: null, at: iso(now) }
}
