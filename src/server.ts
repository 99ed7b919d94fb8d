/**
 * The composition root: configuration → logger → engine → session service → HTTP app and
 * WebSocket hub → one HTTP server on one port. `npm start` runs it through ./main.ts (the
 * process: signals, exit codes); tests call `startServer()` in-process on port 0.
 *
 * Shutdown (`close()`): `/readyz` answers 503, new sessions and upgrades are refused, every
 * session is torn down within its bound, sockets are closed with 1001, then the server stops
 * listening.
 *
 * @module
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { getRequestListener } from '@hono/node-server'
import type { Hono } from 'hono'
import { createTokenVerifier } from './auth/verifier.ts'
import { SIMULATED_MAX_SESSIONS, type Config } from './config.ts'
import type { Engine } from './engines/engine.ts'
import { createEngine } from './engines/index.ts'
import { createApp } from './http/app.ts'
import { createLogger, type Logger } from './logger.ts'
import { createMetrics } from './metrics.ts'
import { createQrImageRenderer, type QrImageRenderer } from './qr/renderer.ts'
import {
  createSessionService,
  openSessionService,
  type DurableSessionService,
  type SupervisedSessionService,
} from './session/service.ts'
import { openStore, type CampaignStore } from './store/index.ts'
import { openCluster, type Cluster } from './cluster/cluster.ts'
import { describeFailure } from './session/messages.ts'
import { createWebhooks, type Webhooks } from './webhooks/webhooks.ts'
import { forwardSessionEvents } from './webhooks/sessionEvents.ts'
import type { StartResult } from './session/api.ts'
import { createWebSocketHub, type WebSocketHubOptions } from './ws/hub.ts'
import { toMermaid } from './inspect/diagram.ts'
import { createWebRoutes } from './web/index.ts'
import { createInspectSocket } from './inspect/socket.ts'
import { createOriginCheck } from './ws/origin.ts'
import { forwardToStately } from './inspect/stately.ts'
import { refuseUpgrade, routeUpgrades, type UpgradeHandler } from './ws/upgrade.ts'

export interface StartServerOptions {
  logger?: Logger
  /** Routes mounted at `/` beside the API (the pages of `src/web`). */
  extraRoutes?: Hono[]
  /**
   * Replaces the engine the configuration names (benchmarks use a stand-in whose QRs rotate on
   * command). The simulator routes exist only for the configured simulated engine.
   */
  engine?: Engine
  /** Replaces the QR image renderer (benchmarks compare the seed's inline rendering). */
  qrImages?: QrImageRenderer
  /**
   * `false`: keep everything in memory, no store (benchmarks' in-memory baseline). Default: the
   * configured store (`DATABASE_URL`, else SQLite in `DATA_DIR`).
   */
  store?: false
  /** Overrides of the WebSocket hub's limits (tests use a short heartbeat). */
  websocket?: Pick<
    WebSocketHubOptions,
    'heartbeatMs' | 'maxSubscriptionsPerSocket' | 'maxBadMessages' | 'maxBufferedBytes'
  >
}

export interface RunningServer {
  /** `http://host:port` the server listens on. */
  url: string
  port: number
  config: Config
  sessions: SupervisedSessionService<StartResult | Promise<StartResult>>
  engine: Engine
  /** The durable store; null when the server runs in memory (`store: false`). */
  store: CampaignStore | null
  /** The webhooks (they need the store's outbox); null without a store. */
  webhooks: Webhooks | null
  /** Graceful shutdown; resolves once every session is torn down and every socket closed. */
  close(): Promise<void>
}

/** The WebSocket endpoint of the contract. */
export const WS_PATH = '/ws/campaigns'
/** The inspector's stream (`INSPECT=true`, admins only). */
export const INSPECT_WS_PATH = '/ws/inspect'

/**
 * Starts the service and resolves once it listens.
 *
 * @example
 * const server = await startServer(loadConfig({ WA_ENGINE: 'simulated', PORT: '0', JWT_SECRET }))
 * await fetch(`${server.url}/healthz`)
 * await server.close()
 */
export async function startServer(
  config: Config,
  {
    logger = createLogger({ level: config.logLevel }),
    extraRoutes,
    websocket,
    ...overrides
  }: StartServerOptions = {}
): Promise<RunningServer> {
  let state: 'starting' | 'ready' | 'stopping' = 'starting'
  const { engine, simulator, maxSessions } = overrides.engine
    ? {
        engine: overrides.engine,
        simulator: undefined,
        maxSessions: config.maxSessions ?? SIMULATED_MAX_SESSIONS,
      }
    : await createEngine(config, logger)
  let opened: OpenedSessions
  try {
    opened = await openSessions(config, { engine, maxSessions, logger, store: overrides.store })
  } catch (error) {
    await engine.close()
    throw error
  }
  const { sessions, store, webhooks } = opened
  const metrics = createMetrics({
    sessions,
    ...(store ? { store } : {}),
    ...(webhooks ? { webhooks } : {}),
    ...(opened.cluster ? { cluster: opened.cluster } : {}),
  })
  sessions.observe((event) => metrics.observe(event))
  const qrImages =
    overrides.qrImages ??
    createQrImageRenderer({
      format: config.qrImage,
      onRendered: (ms) => metrics.observeQrRender(ms),
    })
  const verifier = createTokenVerifier(config.jwt)
  const app = createApp({
    sessions,
    verifier,
    qrImages,
    metrics,
    simulator,
    ...(webhooks ? { webhooks } : {}),
    ...(opened.cluster
      ? { campaignMiddleware: opened.cluster.forwarding, clusterStatus: opened.cluster.status }
      : {}),
    logger,
    isReady: () => state === 'ready',
    corsOrigins: config.corsOrigins,
    extraRoutes: [
      createWebRoutes({ inspect: config.inspect, simulator: config.engine === 'simulated' }),
      ...(extraRoutes ?? []),
    ],
  })
  const hub = createWebSocketHub({
    sessions,
    verifier,
    qrImages,
    metrics,
    logger,
    requireToken: config.wsRequireToken,
    isAccepting: () => state === 'ready',
    ...websocket,
  })

  const inspectSocket = config.inspect
    ? createInspectSocket({
        sessions,
        authenticate: (token) => verifier.verify(token).catch(() => null),
        existingActors: () => [sessions.supervisor],
        recordFromStart: () => [sessions.supervisor],
        toMermaid,
        logger,
      })
    : undefined

  // Optional: the same inspection also streamed to Stately's hosted inspector (needs internet).
  const stately =
    config.inspect && config.inspectStatelyUrl
      ? await forwardToStately({ sessions, url: config.inspectStatelyUrl, logger })
      : undefined

  const isAllowedOrigin = createOriginCheck(config.wsAllowedOrigins)
  /** Refuses a browser page of an origin `WS_ALLOWED_ORIGINS` does not list, before anything else. */
  const fromAllowedOrigins =
    (handle: UpgradeHandler): UpgradeHandler =>
    (request, socket, head) => {
      if (isAllowedOrigin(request)) handle(request, socket, head)
      else
        refuseUpgrade(
          socket,
          403,
          'origin_not_allowed',
          'WebSocket connections from this origin are not allowed (WS_ALLOWED_ORIGINS).'
        )
    }
  const server = createServer(getRequestListener(app.fetch))
  // Upgrades of any other path are served as plain HTTP.
  const upgrades = new Map<string, UpgradeHandler>([
    [WS_PATH, fromAllowedOrigins(hub.handleUpgrade)],
  ])
  if (inspectSocket) {
    upgrades.set(
      INSPECT_WS_PATH,
      fromAllowedOrigins((request, socket, head) => {
        if (state === 'ready') inspectSocket.handleUpgrade(request, socket, head)
        else refuseUpgrade(socket, 503, 'shutting_down', 'The service is shutting down.')
      })
    )
  }
  routeUpgrades(server, upgrades)
  try {
    await listen(server, config.port, config.host)
  } catch (error) {
    // Nothing may outlive a failed start (e.g. the port is taken): no engine, no worker.
    await sessions.shutdown()
    await hub.close()
    await qrImages.close()
    await engine.close()
    await opened.close()
    throw error
  }
  const { port } = server.address() as AddressInfo
  try {
    // A cluster node joins once its address is known (DATA_DIR shared, heartbeats, events).
    await opened.begin({ port, host: config.host })
  } catch (error) {
    state = 'stopping'
    await sessions.shutdown()
    await hub.close()
    const stoppedListening = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeAllConnections()
    await qrImages.close()
    await engine.close()
    await opened.close()
    await stoppedListening
    throw error
  }
  state = 'ready'
  // In the next turn: after the caller has said the service listens (the first log line).
  setImmediate(opened.beginRestore)

  let closing: Promise<void> | undefined
  async function shutdown(): Promise<void> {
    // Keep listening while sessions are torn down: /readyz answers 503 (so a load balancer drains
    // this instance), new sessions and upgrades are refused, cleanup and status still answer.
    state = 'stopping'
    inspectSocket?.close()
    stately?.stop()
    // A cluster node hands its linked campaigns over first (its sockets keep being served).
    await opened.shutdownSessions()
    await hub.close()
    const stoppedListening = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeAllConnections()
    await qrImages.close()
    await engine.close()
    await opened.close()
    await stoppedListening
  }

  return {
    url: `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`,
    port,
    config,
    sessions,
    engine,
    store,
    webhooks,
    close: () => (closing ??= shutdown()),
  }
}

interface OpenedSessions {
  sessions: SupervisedSessionService<StartResult | Promise<StartResult>>
  store: CampaignStore | null
  webhooks: Webhooks | null
  /** With PostgreSQL: this node's cluster membership. */
  cluster: Cluster | null
  /** Once the server listens: a cluster node joins the cluster. */
  begin(address: { port: number; host: string }): Promise<void>
  /** Starts the restore of linked campaigns (once the server listens). */
  beginRestore(): void
  /** Tears every session down (a cluster node drains first). */
  shutdownSessions(): Promise<void>
  /**
   * After `sessions.shutdown()`: commits the sessions' last events to the outbox, stops the
   * webhook worker (what it did not deliver stays for the next start), writes the last statuses
   * and closes the store, then lets another service take the database.
   */
  close(): Promise<void>
}

/**
 * The session service and what keeps it: in memory (`store: false`), or on the configured store
 * (after the database's one-service lock on PostgreSQL), with the webhooks fed by its events. A
 * failure on the way (a store that cannot be opened or read, a service-wide webhook URL that is
 * refused) closes what was opened and rejects: nothing outlives a failed start.
 */
async function openSessions(
  config: Config,
  options: { engine: Engine; maxSessions: number; logger: Logger; store?: false }
): Promise<OpenedSessions> {
  const { engine, maxSessions, logger } = options
  const settings = {
    engine,
    timeouts: config.timeouts,
    liveness: config.liveness,
    maxSessions,
    logger,
  }
  if (options.store === false) {
    const sessions = createSessionService(settings)
    return {
      sessions,
      store: null,
      webhooks: null,
      cluster: null,
      begin: async () => {},
      beginRestore: () => {},
      shutdownSessions: () => sessions.shutdown(),
      close: async () => {},
    }
  }
  let store: CampaignStore | undefined
  let cluster: Cluster | undefined
  let sessions: DurableSessionService | undefined
  let webhooks: Webhooks | undefined
  try {
    store = await openStore({
      dataDir: config.dataDir,
      databaseUrl: config.store.databaseUrl,
      logger,
      bounds: {
        historyMaxEntries: config.store.historyMaxEntries,
        endedSessionsMax: config.store.endedSessionsMax,
        endedSessionsTtlMs: config.store.endedSessionsTtlMs,
      },
      writeBehind: { lagMs: config.store.writeLagMs, maxQueued: config.store.writeQueueMax },
    })
    // After the store: it says clearly what is wrong with a database it cannot reach or read.
    const url = config.store.databaseUrl
    if (url) {
      cluster = openCluster({
        config,
        databaseUrl: url,
        engine,
        store,
        nodeLostMessage: describeFailure('node_lost', config.timeouts, null),
        maxSessions,
        logger,
      })
    }
    sessions = await openSessionService({
      ...settings,
      ...(cluster ? { engine: cluster.engine, nodeId: cluster.node.nodeId } : {}),
      store: cluster ? cluster.store : store,
      restoreConcurrency: config.restoreConcurrency,
      sharedStore: cluster !== undefined,
    })
    webhooks = createWebhooks({ store, ...config.webhooks, logger })
  } catch (error) {
    await webhooks?.stop().catch(() => undefined)
    await sessions?.shutdown().catch(() => undefined)
    await cluster?.close(async () => undefined).catch(() => undefined)
    await store?.close().catch(() => undefined)
    throw error
  }
  return durableSessions(sessions, store, webhooks, cluster ?? null, logger)
}

/** The opened durable parts as one, closed in order. */
function durableSessions(
  sessions: DurableSessionService,
  store: CampaignStore,
  webhooks: Webhooks,
  cluster: Cluster | null,
  logger: Logger
): OpenedSessions {
  const forwarding = forwardSessionEvents({ sessions, webhooks, logger })
  // The ends of sessions lost with their node, told by this node: its webhooks deliver them too.
  const lost = cluster?.observeLost((event, detail) => forwarding.tell(event, detail))
  let sessionsDown: Promise<void> | undefined
  const shutdownSessions = () =>
    (sessionsDown ??= cluster ? cluster.close(() => sessions.shutdown()) : sessions.shutdown())
  return {
    sessions,
    store,
    webhooks,
    cluster,
    begin: async (address) => {
      await cluster?.begin(sessions, address)
      // After the join: a node refused (another process has its NODE_ID) changes nothing shared,
      // such as the service-wide endpoint (one row for the whole cluster).
      await webhooks.start()
    },
    beginRestore: () => sessions.beginRestore(),
    shutdownSessions,
    async close() {
      await shutdownSessions()
      lost?.unsubscribe()
      await forwarding.settled()
      forwarding.unsubscribe()
      await webhooks.stop()
      await store.close()
    },
  }
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
}
