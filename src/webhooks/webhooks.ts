/**
 * Webhooks: the public API the core and the edges use. Endpoints are set here (the service-wide
 * one from configuration, a campaign's own by its owner), events are committed to the outbox
 * here, and the delivery worker is started and stopped here.
 *
 * A campaign endpoint's secret is returned once, by `setCampaignEndpoint`, and never again: no
 * read of this API carries it (the worker reads it from the store to sign).
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import { silentLogger, type Logger } from '../logger.ts'
import {
  SERVICE_ENDPOINT_ID,
  type CampaignStore,
  type DeliveryQuery,
  type DeliveryRecord,
  type OutboxDepth,
  type WebhookEndpointRecord,
} from '../store/index.ts'
import { checkWebhookUrl, type Resolve } from './addressPolicy.ts'
import {
  createDeliveryWorker,
  DEFAULT_DELIVERY_OPTIONS,
  type AttemptReport,
  type DeliveryCounters,
  type DeliveryOptions,
} from './deliveryWorker.ts'
import {
  parseWebhookEvents,
  toOutboxEvent,
  type WebhookEvent,
  type WebhookEventType,
} from './events.ts'
import { assertSigningSecret, newSigningSecret } from './signing.ts'
import { createWebhookSender, type WebhookSender } from './webhookSender.ts'

export interface ServiceEndpointConfig {
  /** `WEBHOOK_URL` */
  url: string
  /** `WEBHOOK_SECRET`: `whsec_…` */
  secret: string
  /** `WEBHOOK_EVENTS` (default: `session.status`). */
  events?: readonly string[]
}

export interface WebhooksOptions extends Partial<DeliveryOptions> {
  store: CampaignStore
  /** The service-wide endpoint; none when null or absent. */
  service?: ServiceEndpointConfig | null
  /** `WEBHOOK_ALLOW_PRIVATE`: allow receivers on loopback and private addresses. */
  allowPrivate?: boolean
  /** `WEBHOOK_RETENTION_MS`: how long ended deliveries stay listed (default: 7 days). */
  retentionMs?: number
  /** How often ended deliveries past the retention are deleted (default: 10 minutes; 0: never). */
  pruneIntervalMs?: number
  clock?: Clock
  logger?: Logger
  /** Host name resolution (tests inject one). */
  resolve?: Resolve
  /** Jitter source (tests inject one). */
  random?: () => number
  /** Replaces the HTTP sender (tests). */
  sender?: WebhookSender
  onAttempt?: (report: AttemptReport) => void
}

/** An endpoint as the API shows it: never with its secret. */
export interface WebhookEndpointView {
  endpointId: string
  campaignId: string | null
  url: string
  events: string[]
  createdAt: number
  disabledAt: number | null
  disabledReason: string | null
}

/** A delivery as the API lists it: without its body (a `session.qr` body is a login capability). */
export type DeliveryView = Omit<DeliveryRecord, 'payload' | 'position'> & {
  /** Pages a listing: pass the last one's as `before` for the next page. */
  cursor: number
}

export interface Webhooks {
  /** Sets the service-wide endpoint from configuration and starts the worker. */
  start(): Promise<void>
  /**
   * Commits the event to the outbox (one delivery per endpoint that takes it); durable when it
   * resolves, with the delivery ids (none if no endpoint takes it).
   */
  emit(event: WebhookEvent): Promise<string[]>
  /**
   * Sets the campaign's endpoint (the URL is checked first), replacing its previous one, with a
   * new secret: the only time the secret is returned. Rejects with a `WebhookUrlError` for a URL
   * refused, an `Error` for unknown events.
   */
  setCampaignEndpoint(
    campaignId: string,
    settings: { url: string; events?: readonly string[] }
  ): Promise<{ endpoint: WebhookEndpointView; secret: string }>
  getCampaignEndpoint(campaignId: string): Promise<WebhookEndpointView | undefined>
  /** Removes it; what was pending for it is cancelled. False if there was none. */
  removeCampaignEndpoint(campaignId: string): Promise<boolean>
  /** Newest first; `owner` limits to the endpoints of the campaigns that user owns. */
  listDeliveries(query?: DeliveryQuery): Promise<DeliveryView[]>
  getDelivery(deliveryId: string): Promise<DeliveryView | undefined>
  /** Sends a failed or cancelled delivery again; false if it is not one or its endpoint is gone. */
  retryDelivery(deliveryId: string): Promise<boolean>
  counters(): DeliveryCounters
  /** Pending and failed deliveries, and the oldest pending one's creation (for the lag). */
  depth(): Promise<OutboxDepth>
  /** Stops the worker (aborting what is in flight) and closes its connections. */
  stop(): Promise<void>
}

export function createWebhooks(options: WebhooksOptions): Webhooks {
  const {
    store,
    service = null,
    allowPrivate = false,
    retentionMs = 7 * 24 * 60 * 60_000,
    pruneIntervalMs = 10 * 60_000,
    clock = systemClock,
    logger = silentLogger,
  } = options
  const delivery: DeliveryOptions = { ...DEFAULT_DELIVERY_OPTIONS }
  for (const key of Object.keys(DEFAULT_DELIVERY_OPTIONS) as Array<keyof DeliveryOptions>) {
    if (options[key] !== undefined) delivery[key] = options[key]
  }
  const serviceEvents = service ? parseWebhookEvents(service.events) : []
  if (service) assertSigningSecret(service.secret, 'WEBHOOK_SECRET')
  const outbox = store.webhooks
  const policy = { allowPrivate, ...(options.resolve ? { resolve: options.resolve } : {}) }
  const sender =
    options.sender ?? createWebhookSender({ ...policy, timeoutMs: delivery.timeoutMs, clock })
  const worker = createDeliveryWorker({
    outbox,
    sender,
    secretFor: (endpoint) =>
      endpoint.endpointId === SERVICE_ENDPOINT_ID ? (service?.secret ?? null) : endpoint.secret,
    options: delivery,
    clock,
    logger,
    ...(options.random ? { random: options.random } : {}),
    ...(options.onAttempt ? { onAttempt: options.onAttempt } : {}),
  })
  let pruneTimer: TimerHandle | undefined
  let stopped = false
  /**
   * False while no endpoint exists: every session event would otherwise cost a transaction that
   * finds nobody to deliver to (the default deployment has no webhooks). Becomes true when one is
   * set here; an endpoint disabled later only costs what it cost before.
   */
  let anyEndpoint = true

  function schedulePrune(): void {
    if (pruneIntervalMs <= 0 || stopped) return
    pruneTimer = clock.setTimeout(() => {
      pruneTimer = undefined
      outbox.pruneDeliveries(clock.now() - retentionMs).then(
        (deleted) => {
          if (deleted > 0) logger.info({ deleted }, 'webhooks: pruned old deliveries')
        },
        (error: unknown) => logger.warn({ err: String(error) }, 'webhooks: pruning failed')
      )
      schedulePrune()
    }, pruneIntervalMs)
  }

  return {
    async start() {
      if (service) {
        await checkWebhookUrl(service.url, policy)
        await outbox.putEndpoint({
          endpointId: SERVICE_ENDPOINT_ID,
          campaignId: null,
          url: service.url,
          events: serviceEvents,
          secret: null,
          createdAt: clock.now(),
        })
      } else {
        await outbox.removeEndpoint(SERVICE_ENDPOINT_ID)
      }
      anyEndpoint = await outbox.hasEndpoints()
      worker.start()
      schedulePrune()
    },

    async emit(event) {
      if (!anyEndpoint) return []
      const ids = await outbox.enqueue(toOutboxEvent(event))
      if (ids.length > 0) worker.kick()
      return ids
    },

    async setCampaignEndpoint(campaignId, settings) {
      const events: WebhookEventType[] = parseWebhookEvents(settings.events)
      await checkWebhookUrl(settings.url, policy)
      const secret = newSigningSecret()
      const record = {
        endpointId: `ep_${randomUUID().replaceAll('-', '')}`,
        campaignId,
        url: settings.url,
        events,
        secret,
        createdAt: clock.now(),
      }
      await outbox.putEndpoint(record)
      anyEndpoint = true
      return {
        endpoint: toEndpointView({ ...record, disabledAt: null, disabledReason: null }),
        secret,
      }
    },

    async getCampaignEndpoint(campaignId) {
      const endpoint = await outbox.campaignEndpoint(campaignId)
      return endpoint && toEndpointView(endpoint)
    },

    async removeCampaignEndpoint(campaignId) {
      const endpoint = await outbox.campaignEndpoint(campaignId)
      return endpoint ? outbox.removeEndpoint(endpoint.endpointId) : false
    },

    async listDeliveries(query) {
      return (await outbox.listDeliveries(query)).map(toDeliveryView)
    },

    async getDelivery(deliveryId) {
      const found = await outbox.getDelivery(deliveryId)
      return found && toDeliveryView(found)
    },

    async retryDelivery(deliveryId) {
      const retried = await outbox.retry(deliveryId)
      if (retried) worker.kick()
      return retried
    },

    counters: () => worker.counters(),
    depth: () => outbox.depth(),

    async stop() {
      stopped = true
      if (pruneTimer !== undefined) clock.clearTimeout(pruneTimer)
      pruneTimer = undefined
      await worker.stop()
      sender.close()
    },
  }
}

function toEndpointView({ secret: _secret, ...view }: WebhookEndpointRecord): WebhookEndpointView {
  return view
}

function toDeliveryView({ payload: _payload, position, ...view }: DeliveryRecord): DeliveryView {
  return { ...view, cursor: position }
}
