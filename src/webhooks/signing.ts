/**
 * Signatures the Standard Webhooks way (the `standardwebhooks` package): HMAC-SHA256 over
 * `id.timestamp.body` with a `whsec_` secret, sent as `webhook-id`, `webhook-timestamp` and
 * `webhook-signature`, so a receiver verifies with any Standard Webhooks library.
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import { Webhook } from 'standardwebhooks'

/** Bytes of a new endpoint secret (the spec asks for 24 to 64). */
const SECRET_BYTES = 32

/** A new signing secret: `whsec_` and base64 of 32 random bytes. */
export function newSigningSecret(): string {
  return `whsec_${randomBytes(SECRET_BYTES).toString('base64')}`
}

/**
 * Throws if `secret` is not a usable Standard Webhooks secret (`whsec_` and base64), with a message
 * that says what is expected (`name` is the setting it came from).
 */
export function assertSigningSecret(secret: string, name: string): void {
  const base64 = secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : ''
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64) || Buffer.from(base64, 'base64').length < 24) {
    throw new Error(
      `${name} must be a Standard Webhooks secret: whsec_ followed by base64 of 24 to 64 random bytes (e.g. whsec_$(openssl rand -base64 32))`
    )
  }
}

export interface SignedHeaders {
  'webhook-id': string
  'webhook-timestamp': string
  'webhook-signature': string
}

/** The three headers for one attempt: the id stays the same across attempts, the time does not. */
export function signWebhook(secret: string, id: string, at: number, body: string): SignedHeaders {
  const timestamp = new Date(Math.floor(at / 1000) * 1000)
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestamp.getTime() / 1000),
    'webhook-signature': new Webhook(secret).sign(id, timestamp, body),
  }
}
