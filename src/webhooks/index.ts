/**
 * Webhooks: signed events delivered at least once from the store's outbox. `createWebhooks` is
 * the entry point; see docs/webhooks.md.
 *
 * @module
 */
export { checkWebhookUrl, isPublicAddress, WebhookUrlError, type Resolve } from './addressPolicy.ts'
export { retryDelay } from './backoff.ts'
export * from './events.ts'
export { newSigningSecret } from './signing.ts'
export type { WebhookSender } from './webhookSender.ts'
export * from './webhooks.ts'
