/**
 * `/ws/inspect`: XState's inspection of the supervisor and every campaign actor, streamed to the
 * inspector page. Admins only, and only when `INSPECT=true`.
 *
 * It costs nothing while nobody looks: the inspection observer is attached when the first
 * viewer connects and detached when the last one leaves. While attached, each inspection event
 * is turned into a small record once (not per viewer); records are sent in batches every
 * `batchMs`; a context summary is computed once per changed actor per batch (not per event);
 * each machine's diagram is sent once per viewer.
 *
 * The stream shows every campaign, so a token whose `campaigns` claim restricts it is refused
 * (403), admin or not. A viewer's token is checked at every batch and heartbeat: once it has
 * expired the viewer is closed with 4401.
 *
 * Protocol (server to viewer, JSON text frames; the viewer sends nothing that matters):
 *
 *   { type: 'hello', batchMs, machines: { [machineId]: mermaidText }, actors: ActorInfo[] }
 *     (each actor with `log`: its last steps, so a viewer that opens sees what just happened)
 *   { type: 'machine', machineId, mermaid }
 *   { type: 'batch', records: InspectRecord[], dropped }
 *
 * A viewer's queue is bounded: past `maxQueue` records its queue is dropped and it is sent a
 * fresh `hello` (the current state of every actor) instead, so a slow viewer never makes the
 * server's memory grow and never sees steps of actors it does not know. A viewer whose socket
 * stays over `maxBufferedBytes` for `slowViewerMs` is closed (1013).
 *
 * @module
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { AnyStateMachine } from 'xstate'
import { WebSocketServer, type WebSocket } from 'ws'
import { upgradeToken } from '../auth/bearer.ts'
import { hasExpired, type Identity } from '../auth/identity.ts'
import type { Logger } from '../logger.ts'
import { silentLogger } from '../logger.ts'
import { guardUpgradeSocket, refuseUpgrade } from '../ws/upgrade.ts'
import { createRecorder, type InspectableSessions, type InspectRecord } from './recorder.ts'

export interface InspectSocketOptions {
  sessions: InspectableSessions
  /** Verifies a bearer token; null when it is invalid or expired. */
  authenticate(token: string): Promise<Identity | null>
  /**
   * Actors that exist before the inspector attaches (the supervisor, live campaign actors), so a
   * viewer sees them at once; XState's inspection only reports actors as they act. Without it,
   * such actors appear at their next step.
   */
  existingActors?: () => Iterable<unknown>
  /**
   * Actors whose last steps are recorded from the start, not only while someone views (the
   * supervisor: one actor, a few events per session), so that its log is not empty when the
   * inspector opens. Each keeps its last `RECENT_STEPS` steps.
   */
  recordFromStart?: () => Iterable<unknown>
  /** The Mermaid `stateDiagram-v2` text of a machine (`toMermaid` from src/inspect/diagram.ts). */
  toMermaid(machine: AnyStateMachine): string
  /** How often batches are sent. */
  batchMs?: number
  /** Records queued per viewer before its queue is replaced by a fresh `hello`. */
  maxQueue?: number
  /** Bytes a viewer's socket may hold unsent before it counts as slow. */
  maxBufferedBytes?: number
  /** How long a viewer may stay slow before it is closed. */
  slowViewerMs?: number
  /** Heartbeat: viewers that do not answer a ping within this period are dropped. */
  heartbeatMs?: number
  logger?: Logger
}

export interface InspectSocket {
  /** Handles an HTTP upgrade for `/ws/inspect` (token in `?token=` or `Authorization`). */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void
  /** Viewers connected now. */
  viewers(): number
  /** Whether the inspection observer is attached now (true only while someone views). */
  attached(): boolean
  /** Closes every viewer (1001) and detaches. */
  close(): void
}

interface Viewer {
  socket: WebSocket
  identity: Identity
  queue: InspectRecord[]
  dropped: number
  resync: boolean
  machinesSent: Set<string>
  slowSince: number | null
  alive: boolean
}

/**
 * The `/ws/inspect` endpoint, ready for the server's upgrade handler.
 *
 * @example
 * const inspectSocket = createInspectSocket({ sessions, authenticate, toMermaid })
 * server.on('upgrade', (request, socket, head) => {
 *   if (new URL(request.url ?? '/', 'http://x').pathname === '/ws/inspect') {
 *     inspectSocket.handleUpgrade(request, socket, head)
 *   }
 * })
 */
export function createInspectSocket(options: InspectSocketOptions): InspectSocket {
  const {
    sessions,
    authenticate,
    existingActors = () => [],
    recordFromStart = () => [],
    toMermaid,
    batchMs = 100,
    maxQueue = 20_000,
    maxBufferedBytes = 4 * 1024 * 1024,
    slowViewerMs = 5_000,
    heartbeatMs = 30_000,
    logger = silentLogger,
  } = options

  const server = new WebSocketServer({ noServer: true, maxPayload: 4 * 1024 })
  const viewers = new Set<Viewer>()
  const recorder = createRecorder({
    sessions,
    existingActors,
    recordFromStart,
    toMermaid,
    logger,
    onRecord: broadcast,
    onMachine(machineId, machine) {
      for (const viewer of viewers) sendMachine(viewer, machineId, machine)
    },
  })
  let flushTimer: ReturnType<typeof setInterval> | null = null
  let heartbeatTimer: ReturnType<typeof setInterval> | null = null

  function broadcast(record: InspectRecord): void {
    for (const viewer of viewers) enqueue(viewer, record)
  }

  function enqueue(viewer: Viewer, record: InspectRecord): void {
    if (viewer.resync) return
    if (viewer.queue.length >= maxQueue) {
      viewer.dropped += viewer.queue.length
      viewer.queue = []
      viewer.resync = true
      return
    }
    viewer.queue.push(record)
  }

  function sendMachine(viewer: Viewer, machineId: string, machine: AnyStateMachine): void {
    if (viewer.machinesSent.has(machineId)) return
    viewer.machinesSent.add(machineId)
    send(viewer, { type: 'machine', machineId, mermaid: recorder.diagramOf(machine) })
  }

  function hello(viewer: Viewer): void {
    const { machines, actors } = recorder.known()
    viewer.machinesSent = new Set(Object.keys(machines))
    viewer.queue = []
    viewer.resync = false
    send(viewer, { type: 'hello', batchMs, machines, actors })
  }

  function flush(): void {
    recorder.flushContexts()
    const now = Date.now()
    for (const viewer of viewers) {
      if (revokeIfExpired(viewer)) continue
      if (viewer.socket.bufferedAmount > maxBufferedBytes) {
        viewer.slowSince ??= now
        if (now - viewer.slowSince > slowViewerMs) {
          logger.info('inspector: closing a viewer that cannot keep up')
          viewer.socket.close(1013, 'viewer too slow')
        }
        continue
      }
      viewer.slowSince = null
      if (viewer.resync) {
        const dropped = viewer.dropped
        hello(viewer)
        viewer.dropped = 0
        send(viewer, { type: 'batch', records: [], dropped })
        continue
      }
      if (viewer.queue.length === 0) continue
      const records = viewer.queue
      viewer.queue = []
      send(viewer, { type: 'batch', records, dropped: viewer.dropped })
      viewer.dropped = 0
    }
  }

  function send(viewer: Viewer, message: unknown): void {
    if (viewer.socket.readyState !== viewer.socket.OPEN) return
    viewer.socket.send(JSON.stringify(message))
  }

  function attach(): void {
    if (recorder.attached()) return
    recorder.attach()
    flushTimer = setInterval(flush, batchMs)
    flushTimer.unref?.()
    heartbeatTimer = setInterval(heartbeat, heartbeatMs)
    heartbeatTimer.unref?.()
    logger.info('inspector: attached')
  }

  function detach(): void {
    if (!recorder.attached()) return
    recorder.detach()
    if (flushTimer) clearInterval(flushTimer)
    if (heartbeatTimer) clearInterval(heartbeatTimer)
    flushTimer = heartbeatTimer = null
    logger.info('inspector: detached')
  }

  /** Closes a viewer whose token has expired (4401); true if it has. */
  function revokeIfExpired(viewer: Viewer): boolean {
    if (!hasExpired(viewer.identity)) return false
    viewer.socket.close(4401, 'token expired')
    return true
  }

  function heartbeat(): void {
    for (const viewer of viewers) {
      if (revokeIfExpired(viewer)) continue
      if (!viewer.alive) {
        viewer.socket.terminate()
        continue
      }
      viewer.alive = false
      viewer.socket.ping()
    }
  }

  function admit(socket: WebSocket, identity: Identity): void {
    const viewer: Viewer = {
      socket,
      identity,
      queue: [],
      dropped: 0,
      resync: false,
      machinesSent: new Set(),
      slowSince: null,
      alive: true,
    }
    // Attach first: the actors replayed on attach land in `tracked`, and the hello carries them.
    try {
      attach()
    } catch (error) {
      logger.error({ err: error }, 'inspector: cannot attach to the sessions')
      if (viewers.size === 0) detach()
      socket.close(1011, 'inspection unavailable')
      return
    }
    viewers.add(viewer)
    hello(viewer)
    socket.on('pong', () => {
      viewer.alive = true
    })
    socket.on('message', () => {
      // Viewers have nothing to say; anything they send is ignored.
    })
    socket.on('error', () => socket.terminate())
    socket.on('close', () => {
      viewers.delete(viewer)
      if (viewers.size === 0) detach()
    })
  }

  return {
    handleUpgrade(request, socket, head) {
      guardUpgradeSocket(socket)
      const token = upgradeToken(request)
      if (!token) {
        refuse(socket, TOKEN_REQUIRED)
        return
      }
      authenticate(token).then(
        (identity) => {
          if (socket.destroyed) return
          if (identity === null) return refuse(socket, INVALID_TOKEN)
          const refusal = refusalFor(identity)
          if (refusal !== null) return refuse(socket, refusal)
          server.handleUpgrade(request, socket, head, (ws) => admit(ws, identity))
        },
        () => refuse(socket, INVALID_TOKEN)
      )
    },
    viewers: () => viewers.size,
    attached: () => recorder.attached(),
    close() {
      for (const viewer of viewers) viewer.socket.close(1001, 'shutting down')
      viewers.clear()
      detach()
      recorder.close()
      server.close()
    },
  }
}

interface Refusal {
  status: 401 | 403
  code: 'unauthorized' | 'forbidden'
  message: string
}

const TOKEN_REQUIRED: Refusal = {
  status: 401,
  code: 'unauthorized',
  message: 'A token is required (?token=<JWT> or Authorization: Bearer).',
}

const INVALID_TOKEN: Refusal = {
  status: 401,
  code: 'unauthorized',
  message: 'The token is invalid or has expired.',
}

function refuse(socket: Duplex, { status, code, message }: Refusal): void {
  refuseUpgrade(socket, status, code, message)
}

/** Why a verified token may not open the inspector, if it may not. */
function refusalFor(identity: Identity): Refusal | null {
  if (!identity.admin) {
    return { status: 403, code: 'forbidden', message: 'The inspector is for admins only.' }
  }
  if (identity.campaigns !== null) {
    return {
      status: 403,
      code: 'forbidden',
      message:
        'The inspector shows every campaign; a token restricted by a "campaigns" claim may not open it.',
    }
  }
  return null
}
