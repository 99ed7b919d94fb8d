/**
 * Prometheus metrics (prom-client, one registry per service instance so that tests can run
 * several). Session gauges are read from `SessionService.stats()` at scrape time; counters and
 * durations are derived from every campaign's session events (`SessionService.observe` feeds
 * `metrics.observe`; a `cleaned` status carries how the engine's teardown went), with a little
 * bookkeeping per live session that is dropped when the session is `cleaned`.
 *
 * @module
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { SESSION_STATUSES } from './session/api.ts'
import type { SessionEvent, SessionService } from './session/api.ts'
import type { CampaignStore } from './store/campaignStore.ts'
import type { Webhooks } from './webhooks/webhooks.ts'

export interface Metrics {
  readonly registry: Registry
  /** Feeds one session event (any campaign) into the counters and histograms. */
  observe(event: SessionEvent): void
  /** Records one QR image rendered. */
  observeQrRender(durationMs: number): void
  websocketClients: Gauge
  /** The Prometheus text exposition. */
  render(): Promise<string>
  readonly contentType: string
}

/** What a cluster node counts (see src/cluster/cluster.ts). */
export interface ClusterCounters {
  leases: number
  fenced: number
  events: { published: number; refused: number; failed: number; received: number }
  failover: { restored: number; lost: number }
}

export interface MetricsOptions {
  sessions: Pick<SessionService, 'stats'>
  /** The durable store, when there is one: its write-behind queue and failures. */
  store?: Pick<CampaignStore, 'health'>
  /** The webhooks, when there are: deliveries, failures, the outbox's depth and lag. */
  webhooks?: Pick<Webhooks, 'counters' | 'depth'>
  /** A cluster node (PostgreSQL): its leases, the events between nodes, the failovers. */
  cluster?: { counters(): ClusterCounters }
  /** Also collect Node's process metrics (CPU, memory, event loop lag). */
  processMetrics?: boolean
}

interface SessionTiming {
  startedAt?: number
  firstQrAt?: number
  cleaningAt?: number
  /** Set when the session timed out or failed: its outcome, counted once it is cleaned. */
  outcome?: 'timedOut' | 'failed'
}

/** Sessions tracked at once for timings; beyond it the oldest are forgotten. */
const MAX_TRACKED_SESSIONS = 50_000

/**
 * Creates the registry and its metrics.
 *
 * @example
 * const metrics = createMetrics({ sessions })
 * app.get('/metrics', async (c) => c.text(await metrics.render(), 200, { 'Content-Type': metrics.contentType }))
 */
export function createMetrics({
  sessions,
  store,
  webhooks,
  cluster,
  processMetrics = true,
}: MetricsOptions): Metrics {
  const registry = new Registry()
  if (processMetrics) collectDefaultMetrics({ register: registry, prefix: 'qrvisor_' })

  new Gauge({
    name: 'qrvisor_sessions',
    help: 'Live sessions by status (ended ones are counted in qrvisor_sessions_ended_total).',
    labelNames: ['status'],
    registers: [registry],
    collect() {
      const { byStatus } = sessions.stats()
      for (const status of SESSION_STATUSES) this.set({ status }, byStatus[status] ?? 0)
    },
  })
  new Gauge({
    name: 'qrvisor_sessions_live',
    help: 'Live sessions (holding or starting an engine).',
    registers: [registry],
    collect() {
      this.set(sessions.stats().live)
    },
  })
  new Gauge({
    name: 'qrvisor_restore_campaigns',
    help: 'The restore of linked campaigns at start, by state (pending, in_flight, started, abandoned, total).',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const { restore } = sessions.stats()
      if (!restore) return
      this.set({ state: 'total' }, restore.total)
      this.set({ state: 'pending' }, restore.pending)
      this.set({ state: 'in_flight' }, restore.inFlight)
      this.set({ state: 'started' }, restore.started)
      this.set({ state: 'abandoned' }, restore.abandoned)
    },
  })
  if (store) {
    new Gauge({
      name: 'qrvisor_store_write_queue',
      help: 'Changed records waiting to be written to the store.',
      registers: [registry],
      collect() {
        this.set(store.health().queued)
      },
    })
    new Gauge({
      name: 'qrvisor_store_write_failing',
      help: '1 while writes to the store fail (they are retried), else 0.',
      registers: [registry],
      collect() {
        this.set(store.health().failing === null ? 0 : 1)
      },
    })
    new Gauge({
      name: 'qrvisor_store_changes_dropped',
      help: 'Changes not queued because the queue was full (the database had been failing); each such record is written again with its next change.',
      registers: [registry],
      collect() {
        this.set(store.health().dropped)
      },
    })
    new Counter({
      name: 'qrvisor_store_fenced_writes_total',
      help: "Session writes refused because the campaign's lease had moved to another node or epoch (a cluster's fencing); dropped.",
      registers: [registry],
      collect() {
        this.reset()
        this.inc(store.health().fenced)
      },
    })
  }
  if (cluster) {
    new Gauge({
      name: 'qrvisor_cluster_leases',
      help: 'Campaign leases this node holds (one per campaign whose engine runs here).',
      registers: [registry],
      collect() {
        this.set(cluster.counters().leases)
      },
    })
    new Counter({
      name: 'qrvisor_cluster_fenced_total',
      help: 'Leases this node gave up because it could not prove them (fenced) or lost them to another node; their engines were killed.',
      registers: [registry],
      collect() {
        this.reset()
        this.inc(cluster.counters().fenced)
      },
    })
    new Counter({
      name: 'qrvisor_cluster_events_total',
      help: 'Session events between nodes: published (sent), refused (by the database: the lease had moved), failed (not sent), received.',
      labelNames: ['outcome'],
      registers: [registry],
      collect() {
        this.reset()
        for (const [outcome, count] of Object.entries(cluster.counters().events)) {
          this.inc({ outcome }, count)
        }
      },
    })
    new Counter({
      name: 'qrvisor_cluster_failovers_total',
      help: 'Campaigns this node took over from another: restored (linked) or lost (a session waiting for a scan ended node_lost).',
      labelNames: ['outcome'],
      registers: [registry],
      collect() {
        this.reset()
        for (const [outcome, count] of Object.entries(cluster.counters().failover)) {
          this.inc({ outcome }, count)
        }
      },
    })
  }
  if (webhooks) {
    const counted: Array<[string, string, keyof ReturnType<Webhooks['counters']>]> = [
      ['qrvisor_webhook_attempts_total', 'Webhook delivery attempts.', 'attempts'],
      ['qrvisor_webhook_delivered_total', 'Webhook deliveries answered 2xx.', 'delivered'],
      [
        'qrvisor_webhook_failures_total',
        'Webhook attempts that failed (each retry counts).',
        'failures',
      ],
      [
        'qrvisor_webhook_given_up_total',
        'Webhook deliveries given up (failed after the last attempt).',
        'gaveUp',
      ],
      [
        'qrvisor_webhook_endpoints_disabled_total',
        'Webhook endpoints disabled by a 410 Gone.',
        'disabled',
      ],
    ]
    for (const [name, help, key] of counted) {
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          this.reset()
          this.inc(webhooks.counters()[key])
        },
      })
    }
    new Gauge({
      name: 'qrvisor_webhook_in_flight',
      help: 'Webhook attempts in flight.',
      registers: [registry],
      collect() {
        this.set(webhooks.counters().inFlight)
      },
    })
    new Gauge({
      name: 'qrvisor_webhook_queue',
      help: 'Webhook deliveries in the outbox, by status (pending, failed).',
      labelNames: ['status'],
      registers: [registry],
      async collect() {
        const depth = await webhooks.depth()
        this.set({ status: 'pending' }, depth.pending)
        this.set({ status: 'failed' }, depth.failed)
      },
    })
    new Gauge({
      name: 'qrvisor_webhook_lag_seconds',
      help: 'Age of the oldest pending webhook delivery (0 when none is pending).',
      registers: [registry],
      async collect() {
        const { oldestPendingAt } = await webhooks.depth()
        this.set(oldestPendingAt === null ? 0 : Math.max(0, Date.now() - oldestPendingAt) / 1000)
      },
    })
  }
  new Counter({
    name: 'qrvisor_liveness_probes_total',
    help: 'Liveness probes of ready sessions, by outcome (alive, missed); the sessions they ended are qrvisor_session_failures_total{reason="unresponsive"}.',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      const { probes } = sessions.stats()
      this.reset()
      this.inc({ outcome: 'alive' }, probes.alive)
      this.inc({ outcome: 'missed' }, probes.missed)
    },
  })
  new Gauge({
    name: 'qrvisor_sessions_max',
    help: 'MAX_SESSIONS: live sessions allowed at once.',
    registers: [registry],
    collect() {
      this.set(sessions.stats().maxSessions)
    },
  })
  const transitions = new Counter({
    name: 'qrvisor_session_transitions_total',
    help: 'Session status changes, by the status entered.',
    labelNames: ['to'],
    registers: [registry],
  })
  const ended = new Counter({
    name: 'qrvisor_sessions_ended_total',
    help: 'Sessions ended (engine gone), by outcome (timedOut, failed, cleaned) and reason.',
    labelNames: ['outcome', 'reason'],
    registers: [registry],
  })
  const timeouts = new Counter({
    name: 'qrvisor_session_timeouts_total',
    help: 'Session deadlines that passed, by reason.',
    labelNames: ['reason'],
    registers: [registry],
  })
  const failures = new Counter({
    name: 'qrvisor_session_failures_total',
    help: 'Sessions that failed, by reason.',
    labelNames: ['reason'],
    registers: [registry],
  })
  const forcedKills = new Counter({
    name: 'qrvisor_engine_forced_kills_total',
    help: 'Engine teardowns that did not finish in DESTROY_TIMEOUT_MS and were killed.',
    registers: [registry],
  })
  const timeToFirstQr = new Histogram({
    name: 'qrvisor_time_to_first_qr_seconds',
    help: 'From the start of a session to its first QR.',
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60],
    registers: [registry],
  })
  const timeToScan = new Histogram({
    name: 'qrvisor_time_to_scan_seconds',
    help: 'From the first QR of a session to the phone scanning it.',
    buckets: [1, 2, 5, 10, 20, 30, 60, 120],
    registers: [registry],
  })
  const teardown = new Histogram({
    name: 'qrvisor_teardown_seconds',
    help: 'Engine teardown time (from cleaning to cleaned).',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30],
    registers: [registry],
  })
  const engineStop = new Histogram({
    name: 'qrvisor_engine_stop_seconds',
    help: 'Engine stop() duration as the engine reports it.',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30],
    registers: [registry],
  })
  const qrRender = new Histogram({
    name: 'qrvisor_qr_render_seconds',
    help: 'QR image render time in the worker pool, queueing included.',
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  })
  const websocketClients = new Gauge({
    name: 'qrvisor_websocket_clients',
    help: 'Open WebSocket connections.',
    registers: [registry],
  })

  const timings = new Map<string, SessionTiming>()
  const timingOf = (sessionId: string): SessionTiming => {
    let timing = timings.get(sessionId)
    if (!timing) {
      timing = {}
      timings.set(sessionId, timing)
      if (timings.size > MAX_TRACKED_SESSIONS) {
        const oldest = timings.keys().next().value
        if (oldest !== undefined) timings.delete(oldest)
      }
    }
    return timing
  }

  return {
    registry,
    websocketClients,
    contentType: registry.contentType,
    render: () => registry.metrics(),
    observe(event) {
      if (event.sessionId === null) return
      if (event.type === 'qr') {
        const timing = timingOf(event.sessionId)
        if (event.attempt === 1 && timing.firstQrAt === undefined) {
          timing.firstQrAt = event.at
          if (timing.startedAt !== undefined) {
            timeToFirstQr.observe((event.at - timing.startedAt) / 1000)
          }
        }
        return
      }
      if (event.type !== 'status') return
      transitions.inc({ to: event.status })
      const timing = timingOf(event.sessionId)
      switch (event.status) {
        case 'initializing':
          timing.startedAt ??= event.at
          break
        case 'authenticating':
          if (timing.firstQrAt !== undefined)
            timeToScan.observe((event.at - timing.firstQrAt) / 1000)
          break
        case 'timedOut':
          timing.outcome = 'timedOut'
          timeouts.inc({ reason: event.reason ?? 'unknown' })
          break
        case 'failed':
          timing.outcome = 'failed'
          failures.inc({ reason: event.reason ?? 'unknown' })
          break
        case 'cleaning':
          timing.cleaningAt ??= event.at
          break
        case 'cleaned':
          // The outcome a session is remembered by, as GET …/connection answers it.
          ended.inc({ outcome: timing.outcome ?? 'cleaned', reason: event.reason ?? 'none' })
          if (timing.cleaningAt !== undefined)
            teardown.observe((event.at - timing.cleaningAt) / 1000)
          if (event.teardown) {
            if (event.teardown.forced) forcedKills.inc()
            engineStop.observe(event.teardown.durationMs / 1000)
          }
          timings.delete(event.sessionId)
          break
      }
    },
    observeQrRender(durationMs) {
      qrRender.observe(durationMs / 1000)
    },
  }
}
