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
import type { AnyStateMachine, InspectionEvent } from 'xstate'
import { WebSocketServer, type WebSocket } from 'ws'
import { upgradeToken } from '../auth/bearer.ts'
import { hasExpired, type Identity } from '../auth/identity.ts'
import type { Logger } from '../logger.ts'
import { silentLogger } from '../logger.ts'
import { guardUpgradeSocket, refuseUpgrade } from '../ws/upgrade.ts'
import { summarizeContext, type ContextSummary } from './redaction.ts'

/** What the inspector needs from the session service: XState inspection, attached on demand. */
export interface InspectableSessions {
  inspect(observer: (event: InspectionEvent) => void): { unsubscribe(): void }
}

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

/** Flat, short, safe to show: never a QR text or a token. */

export interface ActorInfo {
  id: string
  machineId: string
  parentId: string | null
  systemId: string | null
  /** The campaign's id for a campaign actor, else the actor's system id or id. */
  label: string
  campaignId: string | null
  /** The state value as dotted paths; parallel regions joined by ' | '. */
  state: string
  /** XState's status of the actor: active, done, error or stopped. */
  status: string
  context: ContextSummary
  updatedAt: number
}

/** One step of an actor: the event it took, what it was about, and the state it left and entered. */
export interface Step {
  event: string
  /** The campaign an event concerns, when it names one (the supervisor's events do). */
  about?: string
  from: string | null
  to: string
  at: number
}

export type InspectRecord =
  | { k: 'actor'; actor: ActorInfo }
  | ({ k: 'step'; id: string } & Step)
  | { k: 'context'; id: string; context: ContextSummary; label: string; campaignId: string | null }
  | { k: 'end'; id: string; status: string; at: number }

/** What the inspector reads of an actor (XState's public `ActorRef`). */
interface ObservedActor {
  id: string
  sessionId: string
  systemId?: string
  logic: unknown
  system?: {
    inspect(observer: (event: InspectionEvent) => void): { unsubscribe(): void }
  }
  getSnapshot(): unknown
}

interface TrackedActor {
  ref: ObservedActor
  info: ActorInfo | null
  /** Its last steps (at most `RECENT_STEPS`), for the `hello` of a viewer that comes later. */
  recent: Step[]
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

/** Steps kept per actor for a viewer that opens later. */
export const RECENT_STEPS = 50

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
  let subscription: { unsubscribe(): void } | null = null
  let flushTimer: ReturnType<typeof setInterval> | null = null
  let heartbeatTimer: ReturnType<typeof setInterval> | null = null

  // Live only while attached: every machine actor seen, and what changed since the last batch.
  let tracked = new Map<ObservedActor, TrackedActor>()
  /**
   * Ids by actor, and by actor system for the root of each system: an actor's parent is the root
   * of its system here (campaign actors live in shards, the supervisor is a root), which XState's
   * public inspection events tell (`rootId`), so no internal `_parent` is read.
   */
  let ids = new WeakMap<object, string>()
  let nextId = 1
  let contextChanged = new Set<TrackedActor>()
  const diagrams = new Map<string, string>()

  // Recorded from the start (whether anyone views or not): the last steps of a few actors.
  const recordedFromStart = new Map<ObservedActor, { state: string; steps: Step[] }>()
  const recordings: Array<{ unsubscribe(): void }> = []
  for (const candidate of recordFromStart()) {
    const ref = candidate as ObservedActor
    if (!isMachine(ref.logic) || !ref.system) continue
    const recording = { state: stateOf(ref.getSnapshot()), steps: [] as Step[] }
    recordedFromStart.set(ref, recording)
    recordings.push(
      ref.system.inspect((event) => {
        if (event.type !== '@xstate.snapshot' || (event.actorRef as unknown) !== ref) return
        const to = stateOf(event.snapshot)
        keepRecent(recording.steps, stepOf(event.event, recording.state, to, Date.now()))
        recording.state = to
      })
    )
  }

  function idOf(key: object): string {
    let id = ids.get(key)
    if (!id) {
      id = `a${nextId++}`
      ids.set(key, id)
    }
    return id
  }

  /** The key of an actor's id: its system for a root (so its children can name it), else itself. */
  function keyOf(ref: ObservedActor, rootId: string | undefined): object {
    return rootId === ref.sessionId && ref.system ? ref.system : ref
  }

  function diagramOf(machine: AnyStateMachine): string {
    let diagram = diagrams.get(machine.id)
    if (diagram === undefined) {
      try {
        diagram = toMermaid(machine)
      } catch (error) {
        logger.warn({ err: error, machineId: machine.id }, 'inspector: cannot draw a machine')
        diagram = `stateDiagram-v2\n  note "no diagram for ${machine.id}" as N1`
      }
      diagrams.set(machine.id, diagram)
    }
    return diagram
  }

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

  function observe(event: InspectionEvent): void {
    try {
      const ref = event.actorRef as unknown as ObservedActor
      if (event.type === '@xstate.actor') {
        if (isMachine(ref.logic)) tracked.set(ref, { ref, info: null, recent: [] })
      } else if (event.type === '@xstate.snapshot') {
        onSnapshot(ref, event.event, event.snapshot, event.rootId)
      }
    } catch (error) {
      // The inspector must never disturb the actors it watches.
      logger.warn({ err: error }, 'inspector: an inspection event could not be read')
    }
  }

  function onSnapshot(
    ref: ObservedActor,
    event: { type: string },
    snapshot: unknown,
    rootId: string
  ): void {
    let actor = tracked.get(ref)
    if (!actor) {
      // An actor created before the inspector attached: it appears at its next step.
      if (!isMachine(ref.logic)) return
      actor = { ref, info: null, recent: [] }
      tracked.set(ref, actor)
    }
    const at = Date.now()
    const state = stateOf(snapshot)
    const status = statusOf(snapshot)
    let step: Step
    if (!actor.info) {
      actor.info = describeActor(ref, snapshot, at, rootId)
      const machineId = actor.info.machineId
      for (const viewer of viewers) sendMachine(viewer, machineId, ref.logic as AnyStateMachine)
      broadcast({ k: 'actor', actor: { ...actor.info } })
      step = stepOf(event, null, state, at)
    } else {
      step = stepOf(event, actor.info.state, state, at)
      actor.info.state = state
      actor.info.updatedAt = at
      contextChanged.add(actor)
    }
    keepRecent(actor.recent, step)
    broadcast({ k: 'step', id: actor.info.id, ...step })
    actor.info.status = status
    if (status !== 'active') {
      // Its last context (why it ended) still goes out with the next batch.
      broadcast({ k: 'end', id: actor.info.id, status, at })
      tracked.delete(ref)
    }
  }

  /** `rootId` is the root of the actor's system; none for an actor met outside an event (a root). */
  function describeActor(
    ref: ObservedActor,
    snapshot: unknown,
    at: number,
    rootId?: string
  ): ActorInfo {
    const machine = ref.logic as AnyStateMachine
    const context = contextOf(snapshot)
    const isRoot = rootId === undefined || rootId === ref.sessionId
    const campaignId = typeof context?.campaignId === 'string' ? context.campaignId : null
    return {
      id: idOf(keyOf(ref, rootId)),
      machineId: machine.id,
      parentId: isRoot || !ref.system ? null : idOf(ref.system),
      systemId: ref.systemId ?? null,
      label: campaignId ?? ref.systemId ?? (isRoot ? machine.id : ref.id),
      campaignId,
      state: stateOf(snapshot),
      status: statusOf(snapshot),
      context: summarizeContext(context),
      updatedAt: at,
    }
  }

  function sendMachine(viewer: Viewer, machineId: string, machine: AnyStateMachine): void {
    if (viewer.machinesSent.has(machineId)) return
    viewer.machinesSent.add(machineId)
    send(viewer, { type: 'machine', machineId, mermaid: diagramOf(machine) })
  }

  function hello(viewer: Viewer): void {
    const machines: Record<string, string> = {}
    const actors: Array<ActorInfo & { log: Step[] }> = []
    for (const actor of tracked.values()) {
      if (!actor.info) continue
      const machine = actor.ref.logic as AnyStateMachine
      machines[machine.id] = diagramOf(machine)
      actors.push({
        ...actor.info,
        context: summarizeContext(contextOf(actor.ref.getSnapshot())),
        log: recordedFromStart.get(actor.ref)?.steps ?? actor.recent,
      })
    }
    viewer.machinesSent = new Set(Object.keys(machines))
    viewer.queue = []
    viewer.resync = false
    send(viewer, { type: 'hello', batchMs, machines, actors })
  }

  function flush(): void {
    if (contextChanged.size > 0) {
      for (const actor of contextChanged) {
        if (!actor.info) continue
        const context = contextOf(actor.ref.getSnapshot())
        const campaignId = typeof context?.campaignId === 'string' ? context.campaignId : null
        if (campaignId) {
          actor.info.campaignId = campaignId
          actor.info.label = campaignId
        }
        broadcast({
          k: 'context',
          id: actor.info.id,
          context: summarizeContext(context),
          label: actor.info.label,
          campaignId: actor.info.campaignId,
        })
      }
      contextChanged = new Set()
    }
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
    if (subscription) return
    tracked = new Map()
    ids = new WeakMap()
    contextChanged = new Set()
    subscription = sessions.inspect(observe)
    for (const existing of existingActors()) {
      const ref = existing as ObservedActor
      if (tracked.has(ref) || !isMachine(ref.logic)) continue
      tracked.set(ref, { ref, info: describeActor(ref, ref.getSnapshot(), Date.now()), recent: [] })
    }
    flushTimer = setInterval(flush, batchMs)
    flushTimer.unref?.()
    heartbeatTimer = setInterval(heartbeat, heartbeatMs)
    heartbeatTimer.unref?.()
    logger.info('inspector: attached')
  }

  function detach(): void {
    if (!subscription) return
    subscription.unsubscribe()
    subscription = null
    if (flushTimer) clearInterval(flushTimer)
    if (heartbeatTimer) clearInterval(heartbeatTimer)
    flushTimer = heartbeatTimer = null
    tracked = new Map()
    contextChanged = new Set()
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
    attached: () => subscription !== null,
    close() {
      for (const viewer of viewers) viewer.socket.close(1001, 'shutting down')
      viewers.clear()
      detach()
      for (const recording of recordings) recording.unsubscribe()
      recordings.length = 0
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

/** A step, with the campaign its event names (a campaign id, or a session's output's). */
function stepOf(event: unknown, from: string | null, to: string, at: number): Step {
  const { type, campaignId, output } = (event ?? {}) as {
    type?: unknown
    campaignId?: unknown
    output?: { campaignId?: unknown }
  }
  const about = typeof campaignId === 'string' ? campaignId : output?.campaignId
  const step: Step = { event: typeof type === 'string' ? type : 'unknown', from, to, at }
  if (typeof about === 'string') step.about = about
  return step
}

function keepRecent(steps: Step[], step: Step): void {
  steps.push(step)
  if (steps.length > RECENT_STEPS) steps.splice(0, steps.length - RECENT_STEPS)
}

function isMachine(logic: unknown): logic is AnyStateMachine {
  return typeof logic === 'object' && logic !== null && 'root' in logic && 'config' in logic
}

function contextOf(snapshot: unknown): Record<string, unknown> | null {
  const context = (snapshot as { context?: unknown } | undefined)?.context
  return typeof context === 'object' && context !== null
    ? (context as Record<string, unknown>)
    : null
}

function statusOf(snapshot: unknown): string {
  const status = (snapshot as { status?: unknown } | undefined)?.status
  return typeof status === 'string' ? status : 'active'
}

/** `'ready'`, `{ initializing: 'startingEngine' }` → `'initializing.startingEngine'`. */
export function stateOf(snapshot: unknown): string {
  return statePaths((snapshot as { value?: unknown } | undefined)?.value).join(' | ')
}

function statePaths(value: unknown): string[] {
  if (typeof value === 'string') return [value]
  if (typeof value !== 'object' || value === null) return []
  const paths: string[] = []
  for (const [key, child] of Object.entries(value)) {
    const below = statePaths(child)
    if (below.length === 0) paths.push(key)
    for (const path of below) paths.push(`${key}.${path}`)
  }
  return paths
}
