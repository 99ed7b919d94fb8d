/**
 * Session events between the nodes of a cluster, over PostgreSQL's `LISTEN/NOTIFY`.
 *
 * - The node that runs a session publishes each of its events. The `NOTIFY` is sent only if that
 *   node still holds the campaign's lease at the epoch it had (or released it itself): the check
 *   is in the same statement, so a node that lost its lease (paused, cut off) cannot change what
 *   anyone is told, whatever it believes. Events queued in one turn of the event loop go out in
 *   one statement, in order.
 * - Every node listens and hands the other nodes' events to its session table, which shows them
 *   as remote sessions (views, lists, WebSocket subscribers and their replay).
 * - `NOTIFY` has no replay: a node that reconnects its listener says so (`onResync`); what it
 *   missed of a session is superseded by the session's next event, and the store has the rest.
 * - Lease changes worth acting on at once (a handover) go on a second channel.
 *
 * @module
 */
import pg from 'pg'
import type { Logger } from '../logger.ts'
import type { RemoteSessionEvent } from '../session/api.ts'
import type { Fence } from './campaignLeases.ts'

export const SESSIONS_CHANNEL = 'qrvisor_sessions'
export const LEASES_CHANNEL = 'qrvisor_leases'
/** PostgreSQL refuses a payload of 8000 bytes or more. */
const MAX_PAYLOAD_BYTES = 7_900

/** An event of a session that runs on a node, as that node publishes it. */
export type PublishedSessionEvent = RemoteSessionEvent

interface WireEvent extends PublishedSessionEvent {
  /** The node that sent it (a node skips its own). */
  from: string
  /** The sender's own sequence number: keeps two equal events distinct (NOTIFY folds duplicates). */
  n: number
}

export interface ClusterEventsOptions {
  url: string
  nodeId: string
  logger: Logger
  /** Another node's session event. */
  onRemote(event: PublishedSessionEvent): void
  /** A lease was released for a handover (scan for campaigns to take at once). */
  onHandover?(): void
  /** The listener reconnected: events may have been missed meanwhile. */
  onResync?(): void
  /** Reconnect delay after the listener's connection is lost. */
  reconnectMs?: number
  /**
   * Events waiting to be sent at most (default 10,000): while the database does not answer, the
   * oldest are dropped (counted as failed); the sessions' next events supersede them.
   */
  maxQueued?: number
  /** How long one send may take before it counts as failed (default 5 s). */
  queryTimeoutMs?: number
}

interface Queued {
  campaignId: string
  fence: Fence
  payload: string
}

const NOW_MS = `(extract(epoch from clock_timestamp()) * 1000)::bigint`

export class ClusterEvents {
  /** The connection events are sent on; a new one after a failed send. */
  private publisher: Promise<pg.Client> | undefined
  /** When a failed send was last logged (once per 10 s while the database does not answer). */
  private lastFailureLog = 0
  private listener: pg.Client | undefined
  private queue: Queued[] = []
  private flushing: Promise<void> | undefined
  private scheduled = false
  private sent = 0
  private closed = false
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined
  /** Events the database refused (their lease moved on), and events it could not take. */
  readonly counts = { published: 0, refused: 0, failed: 0, received: 0 }

  constructor(private readonly options: ClusterEventsOptions) {}

  async start(): Promise<void> {
    await this.connectPublisher()
    await this.listen()
  }

  /** Sends the event to the other nodes if this node still holds the lease at `fence`. */
  publish(campaignId: string, fence: Fence, event: PublishedSessionEvent): void {
    if (this.closed) return
    const wire: WireEvent = { ...event, from: this.options.nodeId, n: ++this.sent }
    let payload = JSON.stringify(wire)
    if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) payload = JSON.stringify(shrink(wire))
    this.queue.push({ campaignId, fence, payload })
    const max = this.options.maxQueued ?? 10_000
    if (this.queue.length > max) {
      const dropped = this.queue.length - max
      this.queue.splice(0, dropped)
      this.counts.failed += dropped
    }
    this.scheduleFlush()
  }

  /** Sends what is queued in the next turn (events of one turn go in one batch). */
  private scheduleFlush(): void {
    if (this.scheduled || this.closed) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      void this.flush()
    })
  }

  /** Tells the other nodes a campaign was handed over (they scan at once). */
  announceHandover(): void {
    if (this.closed) return
    this.connectPublisher()
      .then((client) =>
        client.query(`select pg_notify($1, $2)`, [LEASES_CHANNEL, this.options.nodeId])
      )
      .catch(() => undefined)
  }

  /** Resolves once every event queued so far was sent (or refused). */
  async settled(): Promise<void> {
    while (this.queue.length > 0 || this.flushing) await this.flush()
  }

  async close(): Promise<void> {
    await this.settled().catch(() => undefined)
    this.closed = true
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer)
    const publisher = this.publisher
    this.publisher = undefined
    await Promise.all([
      publisher?.then((client) => client.end()).catch(() => undefined),
      this.listener?.end().catch(() => undefined),
    ])
  }

  private flush(): Promise<void> {
    if (this.flushing) return this.flushing
    const batch = this.queue
    if (batch.length === 0) return Promise.resolve()
    this.queue = []
    this.flushing = this.send(batch).finally(() => {
      this.flushing = undefined
      // Events published while this batch was on its way: their own flush found it in flight.
      if (this.queue.length > 0) this.scheduleFlush()
    })
    return this.flushing
  }

  private async send(batch: Queued[]): Promise<void> {
    try {
      // In the order given (the ordered subquery; pg_notify is evaluated per row as it comes).
      const client = await this.connectPublisher()
      const { rows } = await client.query<{ sent: number }>(
        `select count(pg_notify($1, s.payload))::int as sent from (
           select e.payload from unnest($2::text[], $3::text[], $4::bigint[])
                  with ordinality as e(campaign_id, payload, epoch, ord)
             join campaign_leases l on l.campaign_id = e.campaign_id and l.owner_node = $5
                  and l.epoch = e.epoch and (l.released = 1 or l.expires_at > ${NOW_MS})
            order by e.ord) s`,
        [
          SESSIONS_CHANNEL,
          batch.map((queued) => queued.campaignId),
          batch.map((queued) => queued.payload),
          batch.map((queued) => queued.fence.epoch),
          this.options.nodeId,
        ]
      )
      const sent = rows[0]?.sent ?? 0
      this.counts.published += sent
      this.counts.refused += batch.length - sent
      if (sent < batch.length) {
        this.options.logger.warn(
          { refused: batch.length - sent },
          'session events refused: this node no longer holds their leases'
        )
      }
    } catch (error) {
      this.counts.failed += batch.length
      // The connection may be stuck (a query timed out on it) or gone: the next send uses a new one.
      this.dropPublisher()
      const now = Date.now()
      if (now - this.lastFailureLog >= 10_000) {
        this.lastFailureLog = now
        this.options.logger.warn(
          { err: error, events: batch.length, failedSoFar: this.counts.failed },
          'session events could not be sent to the other nodes (said once per 10 s)'
        )
      }
    }
  }

  private connectPublisher(): Promise<pg.Client> {
    if (this.closed) return Promise.reject(new Error('the cluster events are closed'))
    this.publisher ??= (async () => {
      const client = newClient(this.options.url, this.options.queryTimeoutMs ?? 5_000)
      // A dropped connection surfaces as the next send's failure.
      client.on('error', () => undefined)
      try {
        await client.connect()
      } catch (error) {
        await client.end().catch(() => undefined)
        throw error
      }
      return client
    })()
    const publisher = this.publisher
    // A failed connection is tried again by the next send.
    publisher.catch(() => {
      if (this.publisher === publisher) this.publisher = undefined
    })
    return publisher
  }

  private dropPublisher(): void {
    const publisher = this.publisher
    this.publisher = undefined
    publisher?.then((client) => client.end()).catch(() => undefined)
  }

  private async listen(): Promise<void> {
    const listener = newClient(this.options.url)
    listener.on('notification', (message) => this.receive(message))
    listener.on('error', () => this.reconnect(listener))
    listener.on('end', () => this.reconnect(listener))
    await listener.connect()
    await listener.query(`listen ${SESSIONS_CHANNEL}`)
    await listener.query(`listen ${LEASES_CHANNEL}`)
    this.listener = listener
  }

  private reconnect(lost: pg.Client): void {
    if (this.closed || this.listener !== lost) return
    this.listener = undefined
    lost.end().catch(() => undefined)
    this.options.logger.warn('lost the cluster event listener; reconnecting')
    const retry = () => {
      this.reconnectTimer = undefined
      if (this.closed) return
      this.listen().then(
        () => this.options.onResync?.(),
        () => (this.reconnectTimer = setTimeout(retry, this.options.reconnectMs ?? 1_000))
      )
    }
    this.reconnectTimer = setTimeout(retry, this.options.reconnectMs ?? 1_000)
  }

  private receive(message: pg.Notification): void {
    if (message.channel === LEASES_CHANNEL) {
      if (message.payload !== this.options.nodeId) this.options.onHandover?.()
      return
    }
    if (message.channel !== SESSIONS_CHANNEL || !message.payload) return
    let wire: WireEvent
    try {
      wire = JSON.parse(message.payload) as WireEvent
    } catch {
      return
    }
    if (wire.from === this.options.nodeId) return
    this.counts.received++
    const { from: _from, n: _n, ...event } = wire
    try {
      this.options.onRemote(event)
    } catch (error) {
      this.options.logger.error({ err: error }, 'a remote session event could not be applied')
    }
  }
}

function newClient(url: string, queryTimeoutMs?: number): pg.Client {
  return new pg.Client({
    connectionString: url,
    application_name: 'qrvisor-events',
    connectionTimeoutMillis: 5_000,
    keepAlive: true,
    ...(queryTimeoutMs !== undefined ? { query_timeout: queryTimeoutMs } : {}),
  })
}

/** An event too large for NOTIFY (a huge engine detail): its texts cut down. */
function shrink(wire: WireEvent): WireEvent {
  const event = { ...wire.event } as Record<string, unknown>
  if (typeof event.detail === 'string') event.detail = event.detail.slice(0, 1_000)
  if (typeof event.message === 'string') event.message = event.message.slice(0, 1_000)
  return { ...wire, event: event as WireEvent['event'] }
}
