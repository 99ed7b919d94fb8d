/**
 * Webhooks: signed events delivered at least once from the store's outbox. `createWebhooks` is
 * the entry point; see docs/webhooks.md.
 *
 * @module
 */
export { checkWebhookUrl, isPublicAddress, WebhookUrlError, type Resolve } from './addressPolicy.ts'
export { retryDelay } from './backoff.ts'
export {
  DEFAULT_DELIVERY_OPTIONS,
  type AttemptReport,
  type DeliveryCounters,
  type DeliveryOptions,
} from './deliveryWorker.ts'
export * from './events.ts'
export { newSigningSecret, signWebhook } from './signing.ts'
export type { SendResult, WebhookRequest, WebhookSender } from './webhookSender.ts'
export * from './webhooks.ts'
