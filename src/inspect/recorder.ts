/**
 * The inspector's recorder: what the machine actors do, read from XState's public inspection
 * events, as records for viewers (an actor appears, steps, its context changes, it ends). It
 * observes only while attached (someone views), except the few actors recorded from the start.
 *
 * @module
 */
import type { AnyStateMachine, InspectionEvent } from 'xstate'
import type { Logger } from '../logger.ts'
import { summarizeContext, type ContextSummary } from './redaction.ts'

/** What the inspector needs from the session service: XState inspection, attached on demand. */
export interface InspectableSessions {
  inspect(observer: (event: InspectionEvent) => void): { unsubscribe(): void }
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

/** Steps kept per actor for a viewer that opens later. */
export const RECENT_STEPS = 50

export interface RecorderOptions {
  sessions: InspectableSessions
  /** Actors that exist before the recorder attaches (see `InspectSocketOptions`). */
  existingActors: () => Iterable<unknown>
  /** Actors whose last steps are recorded from the start (see `InspectSocketOptions`). */
  recordFromStart: () => Iterable<unknown>
  toMermaid(machine: AnyStateMachine): string
  logger: Logger
  /** A record for every viewer. */
  onRecord(record: InspectRecord): void
  /** An actor of this machine was met: viewers that have not got its diagram need it. */
  onMachine(machineId: string, machine: AnyStateMachine): void
}

export interface Recorder {
  /** Starts observing the sessions (idempotent); the actors that exist are known at once. */
  attach(): void
  /** Stops observing and forgets every actor (idempotent). */
  detach(): void
  attached(): boolean
  /** The Mermaid text of a machine, drawn once. */
  diagramOf(machine: AnyStateMachine): string
  /** Every actor known now, with its context and last steps, and their machines' diagrams. */
  known(): { machines: Record<string, string>; actors: Array<ActorInfo & { log: Step[] }> }
  /** Records the context of every actor whose context changed since the last call. */
  flushContexts(): void
  /** Detaches and stops the recordings from the start. */
  close(): void
}

export function createRecorder(options: RecorderOptions): Recorder {
  const { sessions, existingActors, recordFromStart, toMermaid, logger, onRecord, onMachine } =
    options
  let subscription: { unsubscribe(): void } | null = null

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
      onMachine(machineId, ref.logic as AnyStateMachine)
      onRecord({ k: 'actor', actor: { ...actor.info } })
      step = stepOf(event, null, state, at)
    } else {
      step = stepOf(event, actor.info.state, state, at)
      actor.info.state = state
      actor.info.updatedAt = at
      contextChanged.add(actor)
    }
    keepRecent(actor.recent, step)
    onRecord({ k: 'step', id: actor.info.id, ...step })
    actor.info.status = status
    if (status !== 'active') {
      // Its last context (why it ended) still goes out with the next batch.
      onRecord({ k: 'end', id: actor.info.id, status, at })
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
  }

  function detach(): void {
    if (!subscription) return
    subscription.unsubscribe()
    subscription = null
    tracked = new Map()
    contextChanged = new Set()
  }

  function known(): ReturnType<Recorder['known']> {
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
    return { machines, actors }
  }

  function flushContexts(): void {
    if (contextChanged.size === 0) return
    for (const actor of contextChanged) {
      if (!actor.info) continue
      const context = contextOf(actor.ref.getSnapshot())
      const campaignId = typeof context?.campaignId === 'string' ? context.campaignId : null
      if (campaignId) {
        actor.info.campaignId = campaignId
        actor.info.label = campaignId
      }
      onRecord({
        k: 'context',
        id: actor.info.id,
        context: summarizeContext(context),
        label: actor.info.label,
        campaignId: actor.info.campaignId,
      })
    }
    contextChanged = new Set()
  }

  return {
    attach,
    detach,
    attached: () => subscription !== null,
    diagramOf,
    known,
    flushContexts,
    close() {
      detach()
      for (const recording of recordings) recording.unsubscribe()
      recordings.length = 0
    },
  }
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
