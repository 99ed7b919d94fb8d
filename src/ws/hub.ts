/**
 * The WebSocket endpoint `/ws/campaigns`: `ws` in `noServer` mode, upgraded on the HTTP server's
 * port. A socket subscribes to sessions (by `sessionId`, a capability) or to campaigns (by
 * `campaignId`, with a token allowed for it) and receives the session service's events as the
 * contract's messages, QR images rendered off the event loop and delivered in order.
 *
 * Limits that keep one client from hurting the others: 4 KiB frames (close 1009), a number of
 * subscriptions per socket, a budget of bad messages (close 1008), a heartbeat that drops sockets
 * that stop answering, and a bound on each socket's send buffer: a consumer that does not read
 * is dropped (close 1013) instead of letting the server's memory grow.
 *
 * A socket opened with a token keeps its access only while the token is valid: once it expires,
 * the socket is closed with 4401 at its next subscription, its next event or the next heartbeat.
 *
 * @module
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer, WebSocket, type RawData } from 'ws'
import { upgradeToken } from '../auth/bearer.ts'
import { canAccessCampaign, hasExpired, type Identity } from '../auth/identity.ts'
import { InvalidTokenError, type TokenVerifier } from '../auth/verifier.ts'
import { silentLogger, type Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import { SupersededQrError, type QrImageRenderer } from '../qr/renderer.ts'
import type {
  SessionEvent,
  SessionService,
  Subscription,
  SubscriptionTarget,
} from '../session/api.ts'
import { sessionTag } from '../sessionTag.ts'
import {
  parseClientMessage,
  pong,
  protocolError,
  toServerMessage,
  type ServerMessage,
} from './protocol.ts'
import { guardUpgradeSocket, refuseUpgrade } from './upgrade.ts'

export interface WebSocketHubOptions {
  sessions: SessionService
  verifier: TokenVerifier
  qrImages: QrImageRenderer
  metrics?: Metrics
  logger?: Logger
  /** `WS_REQUIRE_TOKEN`: refuse upgrades without a valid token (401). */
  requireToken?: boolean
  /** False while shutting down: upgrades are refused (503). */
  isAccepting?: () => boolean
  heartbeatMs?: number
  maxFrameBytes?: number
  maxSubscriptionsPerSocket?: number
  /**
   * Bad messages (and unknown, forbidden or over-the-limit subscriptions) allowed per window
   * before close 1008.
   */
  maxBadMessages?: number
  badMessageWindowMs?: number
  /** A socket whose unsent data passes this is dropped (close 1013). */
  maxBufferedBytes?: number
}

export interface WebSocketHub {
  /** Handles an HTTP upgrade for the hub's path; answers 401/503 itself when refused. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void
  clientCount(): number
  /** Closes every socket with 1001 and stops the heartbeat; resolves when all are closed. */
  close(): Promise<void>
}

/** Close codes used by the hub. */
export const CLOSE_CODES = {
  goingAway: 1001,
  policyViolation: 1008,
  messageTooBig: 1009,
  tryAgainLater: 1013,
  /** The socket's token has expired (an application code: 4000-4999). */
  tokenExpired: 4401,
} as const

interface ActiveSubscription {
  subscription: Subscription
  /** Delivery in order: set while a QR image of this subscription is being rendered. */
  queue: Promise<void> | null
  pendingRenders: number
}

interface Client {
  ws: WebSocket
  identity: Identity | null
  subscriptions: Map<string, ActiveSubscription>
  badMessageTimes: number[]
  alive: boolean
  dropping: boolean
}

const targetKey = (target: SubscriptionTarget) =>
  'sessionId' in target ? `s:${target.sessionId}` : `c:${target.campaignId}`

/**
 * Creates the hub. Wire it to the HTTP server with
 * `server.on('upgrade', (req, socket, head) => hub.handleUpgrade(req, socket, head))`.
 *
 * @example
 * const hub = createWebSocketHub({ sessions, verifier, qrImages, requireToken: false })
 */
export function createWebSocketHub({
  sessions,
  verifier,
  qrImages,
  metrics,
  logger = silentLogger,
  requireToken = false,
  isAccepting = () => true,
  heartbeatMs = 30_000,
  maxFrameBytes = 4096,
  maxSubscriptionsPerSocket = 32,
  maxBadMessages = 10,
  badMessageWindowMs = 60_000,
  maxBufferedBytes = 1024 * 1024,
}: WebSocketHubOptions): WebSocketHub {
  const wss = new WebSocketServer({ noServer: true, maxPayload: maxFrameBytes })
  const clients = new Set<Client>()

  const heartbeat = setInterval(() => {
    for (const client of clients) {
      if (revokeIfExpired(client)) continue
      if (!client.alive) {
        client.ws.terminate()
        continue
      }
      client.alive = false
      client.ws.ping()
    }
  }, heartbeatMs)
  heartbeat.unref()

  function send(client: Client, message: ServerMessage): void {
    if (client.ws.readyState !== WebSocket.OPEN || client.dropping) return
    client.ws.send(JSON.stringify(message))
    if (client.ws.bufferedAmount > maxBufferedBytes) dropSlowConsumer(client)
  }

  function dropSlowConsumer(client: Client): void {
    client.dropping = true
    logger.warn(
      // The number of subscriptions only: their keys hold session ids, which are never logged.
      { bufferedBytes: client.ws.bufferedAmount, subscriptions: client.subscriptions.size },
      'WebSocket client does not read its messages; dropping it'
    )
    unsubscribeAll(client)
    client.ws.close(CLOSE_CODES.tryAgainLater, 'slow consumer')
    // The close frame queues behind the unread data; do not wait for it.
    setTimeout(() => client.ws.terminate(), 1000).unref()
  }

  /** Closes a socket whose token has expired (4401); true if it has. */
  function revokeIfExpired(client: Client): boolean {
    if (client.identity === null || !hasExpired(client.identity)) return false
    if (!client.dropping) {
      client.dropping = true
      unsubscribeAll(client)
      client.ws.close(CLOSE_CODES.tokenExpired, 'token expired')
    }
    return true
  }

  function badMessage(client: Client, error: ServerMessage): void {
    send(client, error)
    const now = Date.now()
    client.badMessageTimes = client.badMessageTimes.filter((t) => now - t < badMessageWindowMs)
    client.badMessageTimes.push(now)
    if (client.badMessageTimes.length > maxBadMessages && !client.dropping) {
      client.dropping = true
      unsubscribeAll(client)
      client.ws.close(CLOSE_CODES.policyViolation, 'too many bad messages')
    }
  }

  function deliver(client: Client, active: ActiveSubscription, event: SessionEvent): void {
    if (event.type === 'status' && event.status !== 'awaitingScan' && event.sessionId !== null) {
      // Its QR is no longer shown: do not keep the image.
      qrImages.forget(event.sessionId)
    }
    if (event.type === 'qr' && event.sessionId !== null) {
      const image = qrImages
        .imageFor({ sessionId: event.sessionId, attempt: event.attempt, qr: event.qr })
        .catch((error: unknown) => {
          // A newer QR of the session follows: this one is not worth sending any more.
          if (error instanceof SupersededQrError) return undefined
          logger.error(
            { campaignId: event.campaignId, session: sessionTag(event.sessionId), err: error },
            'QR image render failed'
          )
          return null
        })
      active.pendingRenders++
      active.queue = (active.queue ?? Promise.resolve())
        .then(() => image)
        .then((qrCode) => {
          active.pendingRenders--
          if (qrCode !== undefined) send(client, toServerMessage(event, qrCode))
        })
      return
    }
    if (active.pendingRenders === 0) {
      send(client, toServerMessage(event))
      return
    }
    active.queue = (active.queue ?? Promise.resolve()).then(() =>
      send(client, toServerMessage(event))
    )
  }

  function subscribe(client: Client, target: SubscriptionTarget): void {
    if (revokeIfExpired(client)) return
    const key = targetKey(target)
    const about = target
    client.subscriptions.get(key)?.subscription.unsubscribe()
    client.subscriptions.delete(key)
    if (client.subscriptions.size >= maxSubscriptionsPerSocket) {
      badMessage(
        client,
        protocolError(
          'bad_message',
          `A socket may hold at most ${maxSubscriptionsPerSocket} subscriptions.`,
          about
        )
      )
      return
    }
    const { identity } = client
    if ('campaignId' in target) {
      if (identity === null) {
        badMessage(
          client,
          protocolError('forbidden', 'Subscribing by campaignId needs a token.', about)
        )
        return
      }
      if (!mayWatch(identity, target.campaignId)) {
        badMessage(
          client,
          protocolError('forbidden', `You may not watch campaign ${target.campaignId}.`, about)
        )
        return
      }
    }

    // The replay arrives synchronously inside subscribe(): hold it until access is checked.
    const replay: SessionEvent[] = []
    let active: ActiveSubscription | null = null
    const subscription = sessions.subscribe(target, (event) => {
      if (active === null) {
        replay.push(event)
        return
      }
      if (revokeIfExpired(client) || !stillAllowed(client, active, event)) return
      deliver(client, active, event)
    })
    if (subscription === undefined) {
      badMessage(client, protocolError('unknown_session', 'There is no such session.', about))
      return
    }
    const campaignId = replay[0]?.campaignId
    if (identity !== null && campaignId !== undefined && !mayWatch(identity, campaignId)) {
      subscription.unsubscribe()
      badMessage(
        client,
        protocolError('forbidden', `You may not watch campaign ${campaignId}.`, about)
      )
      return
    }
    active = { subscription, queue: null, pendingRenders: 0 }
    client.subscriptions.set(key, active)
    for (const event of replay) deliver(client, active, event)
  }

  function mayWatch(identity: Identity, campaignId: string): boolean {
    return canAccessCampaign(identity, campaignId, sessions.ownerOf(campaignId))
  }

  /**
   * A campaign nobody owned when the socket subscribed may since have been started by someone
   * else: from then on this socket may not see it.
   */
  function stillAllowed(client: Client, active: ActiveSubscription, event: SessionEvent): boolean {
    if (client.identity === null || mayWatch(client.identity, event.campaignId)) return true
    active.subscription.unsubscribe()
    for (const [key, candidate] of client.subscriptions) {
      if (candidate === active) client.subscriptions.delete(key)
    }
    send(
      client,
      protocolError('forbidden', `You may not watch campaign ${event.campaignId}.`, {
        campaignId: event.campaignId,
      })
    )
    return false
  }

  function unsubscribe(client: Client, target: SubscriptionTarget): void {
    const key = targetKey(target)
    client.subscriptions.get(key)?.subscription.unsubscribe()
    client.subscriptions.delete(key)
  }

  function unsubscribeAll(client: Client): void {
    for (const active of client.subscriptions.values()) active.subscription.unsubscribe()
    client.subscriptions.clear()
  }

  function onMessage(client: Client, data: RawData, isBinary: boolean): void {
    if (client.dropping) return
    if (isBinary) {
      badMessage(client, protocolError('bad_message', 'Messages are JSON text frames.'))
      return
    }
    const parsed = parseClientMessage(data.toString())
    if (!parsed.ok) {
      badMessage(client, protocolError('bad_message', parsed.reason))
      return
    }
    const { message } = parsed
    switch (message.type) {
      case 'ping':
        send(client, pong())
        return
      case 'subscribe':
        subscribe(client, message.target)
        return
      case 'unsubscribe':
        unsubscribe(client, message.target)
        return
    }
  }

  function onConnection(ws: WebSocket, identity: Identity | null): void {
    const client: Client = {
      ws,
      identity,
      subscriptions: new Map(),
      badMessageTimes: [],
      alive: true,
      dropping: false,
    }
    clients.add(client)
    metrics?.websocketClients.inc()
    logger.debug({ userId: identity?.userId ?? null }, 'WebSocket client connected')

    ws.on('pong', () => {
      client.alive = true
    })
    ws.on('message', (data, isBinary) => onMessage(client, data, isBinary))
    ws.on('error', (error) => {
      // ws closes the socket itself (1009 for an oversized frame); nothing else to do.
      logger.debug({ err: error }, 'WebSocket client error')
    })
    ws.on('close', (code) => {
      clients.delete(client)
      unsubscribeAll(client)
      metrics?.websocketClients.dec()
      logger.debug({ code, userId: identity?.userId ?? null }, 'WebSocket client disconnected')
    })
  }

  async function authenticate(
    request: IncomingMessage
  ): Promise<{ ok: true; identity: Identity | null } | { ok: false; message: string }> {
    const token = upgradeToken(request)
    if (!token) {
      return requireToken
        ? { ok: false, message: 'A token is required (?token=<JWT> or Authorization: Bearer).' }
        : { ok: true, identity: null }
    }
    try {
      return { ok: true, identity: await verifier.verify(token) }
    } catch (error) {
      if (error instanceof InvalidTokenError) return { ok: false, message: error.message }
      throw error
    }
  }

  return {
    handleUpgrade(request, socket, head) {
      guardUpgradeSocket(socket)
      if (!isAccepting()) {
        refuseUpgrade(socket, 503, 'shutting_down', 'The service is shutting down.')
        return
      }
      authenticate(request).then(
        (result) => {
          if (socket.destroyed) return
          if (!result.ok) {
            refuseUpgrade(socket, 401, 'unauthorized', result.message)
            return
          }
          wss.handleUpgrade(request, socket, head, (ws) => onConnection(ws, result.identity))
        },
        (error: unknown) => {
          logger.error({ err: error }, 'WebSocket upgrade failed')
          refuseUpgrade(socket, 500, 'internal', 'Something went wrong on our side.')
        }
      )
    },
    clientCount: () => clients.size,
    async close() {
      clearInterval(heartbeat)
      const closed = [...clients].map(
        (client) =>
          new Promise<void>((resolve) => {
            if (client.ws.readyState === WebSocket.CLOSED) return resolve()
            client.ws.once('close', () => resolve())
            unsubscribeAll(client)
            client.ws.close(CLOSE_CODES.goingAway, 'server shutting down')
            setTimeout(() => client.ws.terminate(), 1000).unref()
          })
      )
      await Promise.all(closed)
      wss.close()
    },
  }
}
