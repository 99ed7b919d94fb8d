/**
 * A node of a cluster on PostgreSQL (`DATABASE_URL`): its parts, composed and started in order.
 *
 * `openCluster` (before the session service exists) gives the engine that runs campaigns only
 * under their leases and the store whose writes carry the lease's epoch. `begin` (once the node
 * listens, so its address is known) checks that `DATA_DIR` is shared, joins the cluster's
 * heartbeats, listens to the other nodes' session events, starts renewing leases and scanning
 * for campaigns to take over. `close` drains: no new sessions, linked campaigns handed over to
 * the other nodes, then everything stopped in order.
 *
 * @module
 */
import { hostname } from 'node:os'
import type { MiddlewareHandler } from 'hono'
import type { Config } from '../config.ts'
import type { Engine } from '../engines/engine.ts'
import { sendError } from '../http/errors.ts'
import type { Logger } from '../logger.ts'
import type { ClusterCounters } from '../metrics.ts'
import {
  SESSION_REASONS,
  SESSION_STATUSES,
  type SessionEvent,
  type SessionReason,
  type SessionStatus,
} from '../session/api.ts'
import type { ClusterSessions } from './clusterSessions.ts'
import type { CampaignStore } from '../store/index.ts'
import { CampaignLeases, monotonicClock } from './campaignLeases.ts'
import { ClusterEvents } from './clusterEvents.ts'
import { Failover } from './failover.ts'
import { clusterForwarding } from './forwarding.ts'
import { leasedEngine, type LeasedEngine } from './leasedEngine.ts'
import { openLeaseTable, type NodeAddress, type NodeHeartbeat } from './leaseTable.ts'
import { nodeIdentity, NodeIdInUseError } from './nodeIdentity.ts'
import { renewIntervalMs } from '../leaseTiming.ts'
import { createNodeSigner } from './nodeAuth.ts'
import { checkSharedDataDir, removeDataDirMarker } from './sharedDataDir.ts'
import { drainNode } from './drain.ts'
import { hrtimeMs, startWatchdog, type Watchdog } from './watchdog.ts'

/** What the session service writes to and reads from the store. */
export type SessionStorePart = Pick<
  CampaignStore,
  'claim' | 'setWanted' | 'setLinked' | 'setProxy' | 'saveSession' | 'listCampaigns' | 'getCampaign'
>

export interface ClusterStatus {
  node: string
  database: 'ok' | 'unreachable'
  leases: number
  draining: boolean
  nodes: number
}

export interface Cluster {
  /** The engine to give the session service: a campaign runs only under its lease. */
  engine: LeasedEngine
  /** The store to give the session service: its session writes are fenced. */
  store: SessionStorePart
  /** The campaign routes' middleware: forwards a campaign's requests to the node running it. */
  forwarding: MiddlewareHandler
  /** Once the node listens. */
  begin(sessions: ClusterSessions, address: { port: number; host: string }): Promise<void>
  status(): Promise<ClusterStatus>
  /** For `/metrics`. */
  counters(): ClusterCounters
  /**
   * The events this node tells of sessions that were waiting for a scan on a node that died
   * (they end `node_lost`), as its subscribers got them, with a failure status's detail: no
   * session of this node's says them, so its webhooks are fed from here.
   */
  observeLost(listener: LostSessionListener): { unsubscribe(): void }
  /** Drain (hand linked campaigns over), then stop the cluster's parts; sessions are shut down by `shutdownSessions` in between. */
  close(shutdownSessions: () => Promise<void>): Promise<void>
  readonly node: NodeAddress
}

export type LostSessionListener = (event: SessionEvent, detail: string | null) => void

export interface OpenClusterOptions {
  config: Config
  databaseUrl: string
  engine: Engine
  store: CampaignStore
  /** The message of a session that ended `node_lost` (the core's wording). */
  nodeLostMessage: string
  maxSessions: number
  logger: Logger
}

export function openCluster(options: OpenClusterOptions): Cluster {
  const { config, databaseUrl, store, maxSessions } = options
  const settings = config.cluster
  const logger = options.logger.child({ component: 'cluster' })
  const ttlMs = settings.leaseTtlMs
  const killBoundMs = config.timeouts.killMs
  // Known before the node listens (its sessions say where they run); with PORT=0 the port is
  // not known yet, so the process id stands in for it.
  const node: NodeAddress = {
    nodeId: settings.nodeId ?? `${hostname()}:${config.port || `pid${process.pid}`}`,
    url: settings.nodeUrl ?? '',
  }
  const { table, pool } = openLeaseTable(databaseUrl, { maxConnections: 4 })
  // Renewals on a connection of their own: a burst of requests never delays them.
  const renewals = openLeaseTable(databaseUrl, { maxConnections: 1 })
  const signer = createNodeSigner(settings.secret ?? '')
  let sessions: ClusterSessions | undefined
  let draining = false
  let begun = false
  let fenced = 0

  const leases = new CampaignLeases({
    node,
    table,
    renewals: renewals.table,
    ttlMs,
    killBoundMs,
    clock: monotonicClock,
    onLost: (campaignIds, why) => {
      fenced += campaignIds.length
      logger.warn({ campaigns: campaignIds.length, why }, 'leases lost: fencing their engines')
      engine.fence(campaignIds, why)
    },
    onRenewalError: (error) => logger.warn({ err: error }, 'lease renewal failed'),
  })
  const engine = leasedEngine(options.engine, {
    leases,
    clock: monotonicClock,
    logger,
    handsOver: (campaignId) => draining && (sessions?.shouldRun(campaignId) ?? false),
    beforeRelease: () => store.flush(),
  })
  const fencedStore: SessionStorePart = {
    ...bindAll(store),
    saveSession: (record) => store.saveSession(record, leases.fenceOf(record.campaignId)),
    setLinked: (campaignId, linked) =>
      store.setLinked(campaignId, linked, leases.fenceOf(campaignId)),
  }

  let events: ClusterEvents | undefined
  let failover: Failover | undefined
  let published: { unsubscribe(): void } | undefined
  let timer: ReturnType<typeof setInterval> | undefined
  let marker: { token: string } | undefined
  let watchdog: Watchdog | undefined
  /** The live nodes' addresses, from their heartbeats (refreshed every renewal interval). */
  let nodeUrls = new Map<string, string>()
  // A killed predecessor of this name falls silent within the TTL (and a renewal interval).
  const identity = nodeIdentity({
    table,
    ttlMs,
    joinWaitMs: ttlMs + renewIntervalMs({ ttlMs, killBoundMs }) + 1_000,
    logger,
  })
  let identityIsLost = false
  const lostListeners = new Set<LostSessionListener>()

  async function refreshNodes(): Promise<void> {
    const nodes = await table.liveNodes(ttlMs)
    nodeUrls = new Map(nodes.map((other) => [other.nodeId, other.url]))
  }
  /** Campaigns the watchdog watches (their browsers' processes are known). */
  const watched = new Set<string>()

  /**
   * Tells the watchdog, for each lease held, when its fencing starts and which processes to kill
   * if the event loop is blocked then (conservative: a deadline is never later than the keeper's).
   */
  function updateWatchdog(): void {
    if (!watchdog) return
    const now = monotonicClock.now()
    const held = new Set<string>()
    for (const campaignId of leases.heldCampaigns()) {
      const deadline = leases.keeper.fencingDeadlineOf(campaignId)
      const pids = engine.pidsOf(campaignId)
      if (deadline === undefined || pids.length === 0) continue
      held.add(campaignId)
      watched.add(campaignId)
      watchdog.watch(campaignId, hrtimeMs() + (deadline - now), pids)
    }
    for (const campaignId of watched) {
      if (held.has(campaignId)) continue
      watched.delete(campaignId)
      watchdog.unwatch(campaignId)
    }
  }

  function beat(): NodeHeartbeat {
    const stats = sessions?.stats()
    return { ...node, liveSessions: stats?.live ?? 0, maxSessions, draining }
  }

  const heartbeat = () => identity.heartbeat(beat())

  /** Another process took this NODE_ID while this one was silent: this one gives way. */
  function identityLost(error: NodeIdInUseError): void {
    if (!identityIsLost) {
      identityIsLost = true
      draining = true
      engine.fence(leases.heldCampaigns(), 'lost')
    }
    logger.error(
      { err: error.message },
      'another process runs as this node: its sessions were stopped and it takes no new ones; give every node its own NODE_ID and restart this one'
    )
  }

  /** Publishes this node's session events (those of campaigns it holds or held the lease of). */
  function publish(event: SessionEvent): void {
    if (!sessions || !events) return
    const fence = leases.fenceOf(event.campaignId)
    if (!fence) return
    const view = sessions.getCampaign(event.campaignId)
    const { seq: _seq, ...unsequenced } = event
    events.publish(event.campaignId, fence, {
      node: node.nodeId,
      owner: view.owner ?? '',
      event: unsequenced,
      expiresAt: view.expiresAt,
      lastSeenAlive: view.lastSeenAlive,
    })
  }

  /** Shows the sessions the other nodes run now as the store has them (their next event follows). */
  async function resync(service: ClusterSessions): Promise<void> {
    for (const session of await table.sessionsElsewhere(node.nodeId)) {
      if (!isStatus(session.status) || session.status === 'cleaned') continue
      const reason = isReason(session.reason) ? session.reason : null
      service.applyRemote({
        node: session.nodeId,
        owner: session.owner,
        event: {
          type: 'status',
          campaignId: session.campaignId,
          sessionId: session.sessionId,
          at: session.updatedAt,
          status: session.status,
          reason,
          isConnected: session.status === 'ready',
          hasActiveSession: ACTIVE.has(session.status),
          node: session.nodeId,
        },
        expiresAt: null,
        lastSeenAlive: session.lastSeenAlive,
      })
    }
  }

  return {
    engine,
    store: fencedStore,
    node,
    forwarding: (() => {
      const forward = clusterForwarding({
        node,
        signer,
        leases,
        holderOf: (campaignId) => table.holderOf(campaignId),
        runningOn: (campaignId) => {
          const view = sessions?.getCampaign(campaignId)
          return view?.hasActiveSession && view.node !== null ? view.node : undefined
        },
        urlOf: (nodeId) => nodeUrls.get(nodeId),
        timeouts: {
          readMs: renewIntervalMs({ ttlMs, killBoundMs }),
          writeMs: config.timeouts.destroyMs + config.timeouts.killMs + ttlMs,
        },
        place: async () => {
          const stats = sessions?.stats()
          if (stats && stats.accepting && !draining && stats.live < maxSessions)
            return { here: true }
          const nodes = await table.liveNodes(ttlMs)
          const free = nodes.find(
            (other) =>
              other.nodeId !== node.nodeId &&
              !other.draining &&
              other.liveSessions < other.maxSessions
          )
          return free ? { here: false, nodeId: free.nodeId, url: free.url } : { here: true }
        },
        logger,
      })
      // Until it has joined (its NODE_ID proved its own, DATA_DIR checked, leases renewed), a node
      // runs nothing: a campaign's request is refused, to be asked again (of it or another node).
      return async (c, next) =>
        begun
          ? forward(c, next)
          : sendError(
              c,
              503,
              'node_unavailable',
              `This node (${node.nodeId}) is joining the cluster; ask again in a few seconds.`,
              { 'Retry-After': '5' }
            )
    })(),

    async begin(service, address) {
      sessions = service
      node.url ||= `http://${reachableHost(address.host)}:${address.port}`
      logger.info({ node: node.nodeId, url: node.url }, 'joining the cluster')
      await identity.join(beat)
      // The wwebjs engine's saved logins are in DATA_DIR: every node must see the same one.
      marker = await checkSharedDataDir({
        dataDir: config.dataDir,
        nodeId: node.nodeId,
        table,
        ttlMs,
      })
      events = new ClusterEvents({
        url: databaseUrl,
        nodeId: node.nodeId,
        logger,
        onRemote: (remote) => service.applyRemote(remote),
        onHandover: () => failover?.scan(),
        onResync: () => {
          logger.warn('cluster events may have been missed while reconnecting; reading them again')
          resync(service).catch((error: unknown) =>
            logger.warn({ err: error }, 'the sessions of the other nodes could not be read')
          )
        },
      })
      await events.start()
      // Listening first: what runs elsewhere now, then every change of it.
      await resync(service)
      published = service.observe(publish)
      leases.start()
      failover = new Failover({
        leases,
        orphans: (limit) => table.orphans(limit),
        takingNodes: async () =>
          (await table.liveNodes(ttlMs)).filter((other) => !other.draining).length,
        sessions: {
          reload: (campaignId) => service.reload(campaignId),
          requestSession: (request) => Promise.resolve(service.requestSession(request)),
          stats: () => {
            const stats = service.stats()
            return { live: stats.live, maxSessions, accepting: stats.accepting && !draining }
          },
          observe: (listener) => service.observe(listener),
        },
        saveSession: (record, fence) => store.saveSession(record, fence),
        announce: (campaignId, fence, remote, detail) => {
          const told = service.applyRemote(remote)
          events?.publish(campaignId, fence, remote)
          if (told) for (const listener of lostListeners) listener(told, detail)
        },
        concurrency: config.restoreConcurrency,
        nodeLostMessage: options.nodeLostMessage,
        logger,
      })
      await heartbeat()
      // Kills the browsers of leases this node can no longer fence itself (a blocked event loop).
      watchdog = startWatchdog({
        logger,
        onKilled: (campaignIds) => engine.fence(campaignIds, 'fenced'),
      })
      begun = true
      const tick = () => {
        heartbeat()
          .then(refreshNodes)
          .catch((error: unknown) =>
            error instanceof NodeIdInUseError
              ? identityLost(error)
              : logger.warn({ err: error }, 'heartbeat failed')
          )
        engine.releaseIdle()
        updateWatchdog()
        failover?.scan()
      }
      timer = setInterval(tick, renewIntervalMs({ ttlMs, killBoundMs }))
      tick()
    },

    observeLost(listener) {
      lostListeners.add(listener)
      return { unsubscribe: () => void lostListeners.delete(listener) }
    },

    counters: () => ({
      leases: leases.held,
      fenced,
      events: { ...(events?.counts ?? { published: 0, refused: 0, failed: 0, received: 0 }) },
      failover: { ...(failover?.counts ?? { restored: 0, lost: 0 }) },
    }),

    async status() {
      let database: ClusterStatus['database'] = 'ok'
      let nodes = 0
      try {
        nodes = (await table.liveNodes(ttlMs)).length
      } catch {
        database = 'unreachable'
      }
      return { node: node.nodeId, database, leases: leases.held, draining, nodes }
    },

    async close(shutdownSessions) {
      draining = true
      if (begun && sessions && events) {
        await heartbeat().catch(() => undefined)
        await drainNode({
          sessions,
          engine,
          events,
          otherNodes: async () =>
            (await table.liveNodes(ttlMs)).filter(
              (other) => other.nodeId !== node.nodeId && !other.draining
            ).length,
          batch: config.restoreConcurrency,
          // A restore with its saved login is ready within the init deadline, or has failed.
          waitMs: config.timeouts.initMs,
          totalMs: settings.drainMs,
          nodeId: node.nodeId,
          logger,
        }).catch((error: unknown) => logger.warn({ err: error }, 'drain failed'))
      }
      if (timer) clearInterval(timer)
      await failover?.stop()
      await watchdog?.stop()
      await shutdownSessions()
      // Every engine is gone: their leases go back (after their last records are written).
      await engine.releases()
      // The last events (the sessions' ends), then the leases they were published under.
      published?.unsubscribe()
      await events?.settled()
      events?.announceHandover()
      await events?.close()
      leases.stop()
      if (marker) {
        await removeDataDirMarker({
          dataDir: config.dataDir,
          nodeId: node.nodeId,
          ...marker,
        }).catch(() => undefined)
      }
      await table.leave(node.nodeId, identity.instance).catch(() => undefined)
      await pool.end().catch(() => undefined)
      await renewals.pool.end().catch(() => undefined)
    },
  }
}

const STATUSES: ReadonlySet<string> = new Set(SESSION_STATUSES)
/** The statuses that hold (or are starting) an engine. */
const ACTIVE: ReadonlySet<string> = new Set([
  'initializing',
  'awaitingScan',
  'authenticating',
  'ready',
])
const REASONS: ReadonlySet<string> = new Set(SESSION_REASONS)
const isStatus = (value: string): value is SessionStatus => STATUSES.has(value)
const isReason = (value: string | null): value is SessionReason =>
  value !== null && REASONS.has(value)

/** `HOST` as other machines reach it: a wildcard address is this machine's name. */
function reachableHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return hostname()
  return host.includes(':') ? `[${host}]` : host
}

/** The store's methods, bound (the fenced store replaces two of them). */
function bindAll(store: CampaignStore): SessionStorePart {
  return {
    claim: store.claim.bind(store),
    setWanted: store.setWanted.bind(store),
    setLinked: store.setLinked.bind(store),
    setProxy: store.setProxy.bind(store),
    saveSession: store.saveSession.bind(store),
    listCampaigns: store.listCampaigns.bind(store),
    getCampaign: store.getCampaign.bind(store),
  }
}
