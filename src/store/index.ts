/**
 * The durable campaign store: its interface, and `openStore` to open the configured one.
 *
 * @module
 */
export * from './campaignStore.ts'
export { StoreClosedError, StoreOpenError } from './errors.ts'
export type { StoreOptions } from './kyselyStore.ts'
export { openStore, SQLITE_FILE } from './openStore.ts'
export * from './webhookOutbox.ts'
