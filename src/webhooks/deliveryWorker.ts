/**
 * The delivery worker: sends what the outbox holds, one attempt at a time per lane.
 *
 * A lane is an endpoint and a campaign. Only its head (its oldest pending delivery) is ever sent,
 * so one campaign's events reach an endpoint in the order they were enqueued, and a failing head
 * holds back only its own lane. Attempts run side by side up to `concurrency` in all and
 * `endpointConcurrency` per endpoint, so a slow or dead receiver takes a bounded share and holds
 * back nobody else's.
 *
 * All state is in the store: the worker keeps only what it has in flight. Each attempt is leased
 * in the store first (so a second worker on a shared database does not send it too); a worker
 * that dies mid-attempt leaves a lease that expires, and the delivery is sent again (at least
 * once). Stopping aborts the attempts in flight and frees their leases, without counting them.
 *
 * @module
 */
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import { silentLogger, type Logger } from '../logger.ts'
import {
  laneOf,
  type AttemptOutcome,
  type DeliveryRecord,
  type WebhookEndpointRecord,
  type WebhookOutbox,
} from '../store/index.ts'
import { retryDelay } from './backoff.ts'
import { signWebhook } from './signing.ts'
import type { WebhookSender } from './webhookSender.ts'

export interface DeliveryOptions {
  /** `WEBHOOK_TIMEOUT_MS`: an attempt's answer must come within this. */
  timeoutMs: number
  /** `WEBHOOK_RETRY_BASE_MS`: the wait after a first failure; doubles per failure. */
  retryBaseMs: number
  /** `WEBHOOK_RETRY_MAX_MS`: the longest wait between two attempts. */
  retryMaxMs: number
  /** `WEBHOOK_MAX_ATTEMPTS`: attempts in all before a delivery is `failed`. */
  maxAttempts: number
  /** `WEBHOOK_CONCURRENCY`: attempts in flight at most, in all. */
  concurrency: number
  /** `WEBHOOK_ENDPOINT_CONCURRENCY`: attempts in flight at most per endpoint (one per lane). */
  endpointConcurrency: number
  /** How often the outbox is looked at when nothing is due (other processes may enqueue). */
  idlePollMs: number
}

export const DEFAULT_DELIVERY_OPTIONS: DeliveryOptions = {
  timeoutMs: 10_000,
  retryBaseMs: 5_000,
  retryMaxMs: 60 * 60_000,
  maxAttempts: 8,
  concurrency: 32,
  endpointConcurrency: 4,
  idlePollMs: 30_000,
}

/** What one attempt ended with, for metrics. */
export interface AttemptReport {
  endpointId: string
  campaignId: string
  outcome: AttemptOutcome['kind']
  /** Wall time of the HTTP attempt. */
  durationMs: number
  /** From the delivery's creation until it was delivered (for `delivered` only). */
  lagMs: number | null
}

export interface DeliveryCounters {
  attempts: number
  delivered: number
  /** Attempts that failed (each retry counts). */
  failures: number
  /** Deliveries given up (`failed`). */
  gaveUp: number
  /** Endpoints disabled by a 410 Gone. */
  disabled: number
  inFlight: number
}

export interface DeliveryWorkerDeps {
  outbox: WebhookOutbox
  sender: WebhookSender
  /** The signing secret of an endpoint; null if it has none (the attempt fails). */
  secretFor(endpoint: WebhookEndpointRecord): string | null
  options: DeliveryOptions
  clock?: Clock
  logger?: Logger
  random?: () => number
  onAttempt?: (report: AttemptReport) => void
}

export interface DeliveryWorker {
  start(): void
  /** Looks at the outbox now (after an enqueue). */
  kick(): void
  counters(): DeliveryCounters
  /** Aborts what is in flight (freeing its leases) and stops; resolves when nothing runs. */
  stop(): Promise<void>
}

/** A lease outlives the attempt's timeout by this much, for the store writes around it. */
const LEASE_MARGIN_MS = 5_000

export function createDeliveryWorker(deps: DeliveryWorkerDeps): DeliveryWorker {
  const { outbox, sender, options, clock = systemClock, logger = silentLogger } = deps
  const random = deps.random ?? Math.random
  const retryWindowMs = retryWindow(options)
  const busyLanes = new Set<string>()
  const perEndpoint = new Map<string, number>()
  const inFlight = new Map<string, { done: Promise<void>; abort: AbortController }>()
  const counters: Omit<DeliveryCounters, 'inFlight'> = {
    attempts: 0,
    delivered: 0,
    failures: 0,
    gaveUp: 0,
    disabled: 0,
  }
  let running = false
  let pumping: Promise<void> | undefined
  let pumpAgain = false
  let wakeTimer: TimerHandle | undefined
  let wakeAt = Infinity

  function kick(): void {
    if (!running) return
    if (pumping) {
      pumpAgain = true
      return
    }
    pumping = pump()
      .catch((error: unknown) => {
        logger.warn({ err: String(error) }, 'webhooks: reading the outbox failed; retrying')
        wakeIn(options.retryBaseMs)
      })
      .finally(() => {
        pumping = undefined
        if (pumpAgain) {
          pumpAgain = false
          kick()
        }
      })
  }

  async function pump(): Promise<void> {
    for (;;) {
      pumpAgain = false
      const capacity = options.concurrency - inFlight.size
      let started = 0
      let full = false
      if (capacity > 0) {
        // An endpoint at its share is left out of the query, so its backlog never fills the
        // window and hides the heads of other endpoints behind it.
        const skipEndpoints = [...perEndpoint]
          .filter(([, count]) => count >= options.endpointConcurrency)
          .map(([endpointId]) => endpointId)
        const heads = await outbox.dueHeads({ limit: capacity, busy: busyLanes, skipEndpoints })
        // More may be due: the attempts ending will look again.
        full = heads.length === capacity
        for (const head of heads) {
          if (!running) return
          if ((perEndpoint.get(head.endpointId) ?? 0) >= options.endpointConcurrency) continue
          startAttempt(head)
          started++
        }
      }
      if (!running) return
      if (started === 0 || inFlight.size >= options.concurrency) {
        if (full || inFlight.size >= options.concurrency) return
        break
      }
    }
    const due = await outbox.nextDueAt()
    if (!running) return
    const now = clock.now()
    if (due === null) wakeIn(options.idlePollMs)
    else if (due > now) wakeIn(Math.min(due - now, options.idlePollMs))
    // Due now but not started: its lane or endpoint is busy, and an attempt ending kicks again.
    else if (inFlight.size === 0) wakeIn(Math.min(100, options.idlePollMs))
  }

  function wakeIn(ms: number): void {
    if (!running) return
    const at = clock.now() + ms
    if (wakeTimer !== undefined && wakeAt <= at) return
    if (wakeTimer !== undefined) clock.clearTimeout(wakeTimer)
    wakeAt = at
    wakeTimer = clock.setTimeout(() => {
      wakeTimer = undefined
      wakeAt = Infinity
      kick()
    }, ms)
  }

  function startAttempt(head: DeliveryRecord): void {
    const lane = laneOf(head)
    busyLanes.add(lane)
    perEndpoint.set(head.endpointId, (perEndpoint.get(head.endpointId) ?? 0) + 1)
    const abort = new AbortController()
    const done = attempt(head, abort.signal)
      .catch((error: unknown) => {
        logger.warn(
          { err: String(error), deliveryId: head.deliveryId, campaignId: head.campaignId },
          'webhooks: recording a delivery attempt failed; it will be tried again'
        )
        wakeIn(options.retryBaseMs)
      })
      .finally(() => {
        inFlight.delete(head.deliveryId)
        busyLanes.delete(lane)
        const left = (perEndpoint.get(head.endpointId) ?? 1) - 1
        if (left > 0) perEndpoint.set(head.endpointId, left)
        else perEndpoint.delete(head.endpointId)
        kick()
      })
    inFlight.set(head.deliveryId, { done, abort })
  }

  async function attempt(delivery: DeliveryRecord, signal: AbortSignal): Promise<void> {
    const endpoint = await outbox.getEndpoint(delivery.endpointId)
    if (!running) return
    if (
      !(await outbox.lease(delivery.deliveryId, clock.now() + options.timeoutMs + LEASE_MARGIN_MS))
    ) {
      return
    }
    // Removing or disabling an endpoint cancels what is pending for it, in the same transaction;
    // a delivery still pending without one is given up rather than looked at again and again.
    if (!endpoint || endpoint.disabledAt !== null) {
      await outbox.recordAttempt(delivery.deliveryId, {
        kind: 'failed',
        error: 'its endpoint no longer takes deliveries',
      })
      return
    }
    const secret = deps.secretFor(endpoint)
    const started = clock.now()
    const result =
      secret === null
        ? ({ ok: false, status: null, error: 'the endpoint has no signing secret' } as const)
        : await sender.send(
            {
              url: endpoint.url,
              body: delivery.payload,
              headers: { ...signWebhook(secret, delivery.deliveryId, started, delivery.payload) },
            },
            signal
          )
    if (signal.aborted) {
      // Stopping: not an attempt of the receiver's; the next worker sends it again.
      await outbox.release(delivery.deliveryId)
      return
    }
    const outcome = outcomeOf(delivery, result)
    await outbox.recordAttempt(delivery.deliveryId, outcome)
    const finished = clock.now()
    counters.attempts++
    if (outcome.kind === 'delivered') counters.delivered++
    else counters.failures++
    if (outcome.kind === 'failed') counters.gaveUp++
    if (outcome.kind === 'gone') {
      counters.disabled++
      logger.warn(
        { endpointId: endpoint.endpointId, campaignId: endpoint.campaignId },
        'webhooks: the receiver answered 410 Gone; its endpoint is disabled'
      )
    }
    if (outcome.kind === 'failed') {
      logger.warn(
        {
          deliveryId: delivery.deliveryId,
          campaignId: delivery.campaignId,
          err: result.ok ? '' : result.error,
        },
        `webhooks: a delivery failed ${options.maxAttempts} times and is given up`
      )
    }
    deps.onAttempt?.({
      endpointId: delivery.endpointId,
      campaignId: delivery.campaignId,
      outcome: outcome.kind,
      durationMs: finished - started,
      lagMs: outcome.kind === 'delivered' ? finished - delivery.createdAt : null,
    })
  }

  function outcomeOf(
    delivery: DeliveryRecord,
    result: Awaited<ReturnType<WebhookSender['send']>>
  ): AttemptOutcome {
    if (result.ok) return { kind: 'delivered' }
    if (result.status === 410) return { kind: 'gone', error: result.error }
    const failures = delivery.attempts + 1
    // An event that waited behind its lane's head for a whole retry window before its first
    // attempt has had its chance: that attempt failing, it goes too. Without this, each event
    // behind a dead receiver would wait a full window of its own, and a lane would take hours per
    // few events to drain. A delivery that had attempts of its own keeps its whole schedule.
    const expired = delivery.attempts === 0 && clock.now() - delivery.createdAt >= retryWindowMs
    if (failures >= options.maxAttempts || expired) {
      return { kind: 'failed', error: result.error }
    }
    const wait = retryDelay(failures, {
      baseMs: options.retryBaseMs,
      maxMs: options.retryMaxMs,
      random,
    })
    return { kind: 'retry', error: result.error, nextAttemptAt: clock.now() + wait }
  }

  return {
    start() {
      if (running) return
      running = true
      kick()
    },
    kick,
    counters: () => ({ ...counters, inFlight: inFlight.size }),
    async stop() {
      running = false
      if (wakeTimer !== undefined) clock.clearTimeout(wakeTimer)
      wakeTimer = undefined
      wakeAt = Infinity
      for (const { abort } of inFlight.values()) abort.abort()
      await pumping
      while (inFlight.size > 0) await inFlight.values().next().value!.done
    },
  }
}

/**
 * How long a delivery's retries take at most, without jitter: the sum of the waits between its
 * `maxAttempts` attempts (with the defaults, 5 + 10 + … + 320 s = 635 s).
 */
export function retryWindow({ retryBaseMs, retryMaxMs, maxAttempts }: DeliveryOptions): number {
  let total = 0
  for (let failures = 1; failures < maxAttempts; failures++) {
    total += Math.min(retryMaxMs, retryBaseMs * 2 ** (failures - 1))
  }
  return total
}
