/**
 * The supervisor's own structure for its campaign actors: who owns which campaign, the live
 * session of each campaign (and any still being torn down), the bounded tombstones of ended
 * sessions, and the subscribers to them.
 *
 * A campaign is remembered (its record, with its owner) while it has a live session or a
 * tombstone, and forgotten with its last tombstone: nothing per campaign outlives the tombstones'
 * bound, and a refused request, which starts no session, keeps nothing. The one exception is
 * the owner of a campaign that was ever linked (reached `ready`): its WhatsApp login stays
 * saved, so forgetting who owns it would hand the login to whoever asks next. Those owners are
 * kept for the life of the process (a short string each, and only a phone's scan adds one).
 *
 * Why not `spawnChild`: XState copies a machine's `snapshot.children` on every spawn and stop,
 * so one machine with N children costs O(N²) (10k children: 14.6 s to spawn). And why not one
 * shared actor system either: stopping an actor scans every scheduled event of its system
 * (`scheduler.cancelAll`), so N sessions in one system cost O(N²) to tear down (measured: 10k
 * sessions took 3.1 s to shut down, 1k took 72 ms). A system per session fixes that but costs
 * ~2 KiB of heap each. So campaign actors share the system of a small *shard* actor, at most
 * `SHARD_SIZE` sessions per shard, on the supervisor's clock: teardown scans at most one shard's
 * timers. Each campaign actor reports its end to the supervisor as `SESSION.ENDED` (or
 * `SESSION.FAILED` for a bug), and every operation here is a Map lookup: starting or ending a
 * session costs the same with 10 sessions or 100,000.
 *
 * @module
 */
import type { AnyActorRef, InspectionEvent, Observer, Subscription as XSubscription } from 'xstate'
import { createActor, createMachine } from 'xstate'
import type { Clock } from '../clock.ts'
import type {
  CampaignQuery,
  CampaignView,
  SessionEvent,
  SessionStats,
  Subscription,
  SubscriptionTarget,
} from './api.ts'
import type {
  CampaignEmitted,
  CampaignInput,
  CampaignMachine,
  CampaignTimeouts,
} from './campaignMachine.ts'
import { statusOf } from './campaignMachine.ts'
import { CreationOrder, pageAfter, type Page, type Positioned } from './creationOrder.ts'
import {
  ACTIVE_STATUSES,
  SESSION_STATUSES,
  type HistoryEntry,
  type SessionFailure,
  type SessionReason,
  type SessionStatus,
} from './status.ts'

export type CampaignActor = ReturnType<typeof createActor<CampaignMachine>>

/** Sessions per shard: bounds what stopping one actor scans, and amortises a system's heap. */
export const SHARD_SIZE = 256

/**
 * A shard is the parent of its campaign actors only so that they share its actor system. It
 * absorbs what children report to a parent (their ends are observed directly): with `'*'`
 * handled, a child's error never escalates into the shard.
 */
const shardMachine = createMachine({ id: 'shard', on: { '*': {} } })

interface Shard {
  actor: AnyActorRef
  /** Sessions ever placed in it, and those still live. */
  placed: number
  live: number
  inspection: XSubscription | undefined
}
export type SessionListener = (event: SessionEvent) => void

export interface LiveSession {
  campaignId: string
  sessionId: string
  actor: CampaignActor
  shard: Shard
  /** The last `error` the session emitted, kept for its tombstone. */
  failure: SessionFailure | null
  /** The last status it reported, kept for the per-status counts. */
  status: SessionStatus
  /** Resolved when the session ends (cleanups waiting for it); created when needed. */
  endWaiters: Array<() => void> | undefined
}

export interface Tombstone {
  campaignId: string
  sessionId: string
  /** `timedOut` or `failed` when the session ended that way, else `cleaned`. */
  status: SessionStatus
  reason: SessionReason | null
  failure: SessionFailure | null
  history: HistoryEntry[]
  endedAt: number
}

interface CampaignRecord extends Positioned {
  campaignId: string
  /** The user who first started a session for it (kept as long as the record). */
  owner: string
  /** The newest session of the campaign, until it ends. */
  current: LiveSession | undefined
  /** Older sessions still being torn down (replaced by `current`); created when needed. */
  draining: Map<string, LiveSession> | undefined
  /** The newest ended session. */
  last: Tombstone | undefined
  lastActivity: number | null
}

export interface RegistryOptions {
  machine: CampaignMachine
  timeouts: CampaignTimeouts
  /** The clock of every campaign actor's timers. */
  clock: Clock
  now: () => number
  /** How many ended sessions are remembered, and for how long. */
  maxTombstones: number
  tombstoneTtlMs: number
  /** Told when a subscriber's listener throws (the others still get the event). */
  onListenerError?: (error: unknown) => void
}

export class SessionRegistry {
  private readonly campaigns = new Map<string, CampaignRecord>()
  /** Every campaign record, and each owner's, in the order they were created (for paging). */
  private readonly listing = new CreationOrder<CampaignRecord>()
  private readonly listingByOwner = new Map<string, CreationOrder<CampaignRecord>>()
  private nextPosition = 1
  private readonly liveSessions = new Map<string, LiveSession>()
  /** Owners of campaigns that were ever linked, kept after their records are forgotten. */
  private readonly linkedOwners = new Map<string, string>()
  /** Ended sessions by sessionId. */
  private readonly tombstones = new Map<string, Tombstone>()
  /**
   * Their sessionIds, oldest first, consumed from `tombstoneHead`. Not the Map's own order:
   * iterating a Map from its head walks every entry deleted since V8 last compacted it, which
   * made evicting past the bound cost O(N) each (21 s to shut down 100k sessions).
   */
  private tombstoneOrder: string[] = []
  private tombstoneHead = 0
  private readonly campaignListeners = new Map<string, Set<SessionListener>>()
  private readonly sessionListeners = new Map<string, Set<SessionListener>>()
  private readonly observers = new Set<SessionListener>()
  private readonly inspectors = new Set<Observer<InspectionEvent>>()
  private readonly shards = new Set<Shard>()
  /** Live sessions by status, kept as they change so stats() costs nothing at 100k sessions. */
  private readonly statusCounts = emptyStatusCounts()
  private shard: Shard | undefined
  private seq = 0

  constructor(private readonly options: RegistryOptions) {}

  get liveCount(): number {
    return this.liveSessions.size
  }

  /** Campaigns remembered: with a live session or a tombstone. */
  get campaignCount(): number {
    return this.campaigns.size
  }

  ownerOf(campaignId: string): string | undefined {
    return this.campaigns.get(campaignId)?.owner ?? this.linkedOwners.get(campaignId)
  }

  current(campaignId: string): LiveSession | undefined {
    return this.campaigns.get(campaignId)?.current
  }

  session(sessionId: string): LiveSession | undefined {
    return this.liveSessions.get(sessionId)
  }

  /** Every live session of the campaign, the current one first. */
  sessionsOf(campaignId: string): LiveSession[] {
    const record = this.campaigns.get(campaignId)
    if (!record) return []
    const sessions = [...(record.draining?.values() ?? [])]
    if (record.current) sessions.unshift(record.current)
    return sessions
  }

  allLive(): IterableIterator<LiveSession> {
    return this.liveSessions.values()
  }

  hasDraining(campaignId: string): boolean {
    return (this.campaigns.get(campaignId)?.draining?.size ?? 0) > 0
  }

  /** Records a request for a remembered campaign; creates nothing. */
  touch(campaignId: string): void {
    const record = this.campaigns.get(campaignId)
    if (record) record.lastActivity = this.options.now()
  }

  /**
   * Creates and starts the actor of a new session, as the campaign's current one. The current
   * session, if any, must have been retired first. The supervisor is told when it ends. `owner`
   * becomes the campaign's owner unless it already has one.
   */
  startSession(
    supervisor: AnyActorRef,
    campaignId: string,
    sessionId: string,
    owner: string
  ): LiveSession {
    const record =
      this.campaigns.get(campaignId) ??
      this.remember(campaignId, this.linkedOwners.get(campaignId) ?? owner)
    const input: CampaignInput = {
      campaignId,
      sessionId,
      timeouts: this.options.timeouts,
      awaitPredecessor: (record.draining?.size ?? 0) > 0,
    }
    const shard = this.shardForNewSession()
    const actor = createActor(this.options.machine, { id: sessionId, input, parent: shard.actor })
    shard.live++
    const session: LiveSession = {
      campaignId,
      sessionId,
      actor,
      shard,
      failure: null,
      status: 'idle',
      endWaiters: undefined,
    }
    this.statusCounts.idle++
    // One shared handler: XState drops an actor's listeners itself when it completes or fails.
    actor.on('*', this.onEmitted)
    actor.subscribe({
      complete: () => {
        const output = actor.getSnapshot().output
        if (output) supervisor.send({ type: 'SESSION.ENDED', sessionId, output })
      },
      error: (error) => supervisor.send({ type: 'SESSION.FAILED', sessionId, error }),
    })
    record.current = session
    record.lastActivity = this.options.now()
    this.liveSessions.set(sessionId, session)
    actor.start()
    actor.send({ type: 'START' })
    return session
  }

  /**
   * Attaches an inspection observer to every campaign actor, present and future, while it is
   * attached; with no observer, inspection costs nothing. A new observer first gets an
   * `@xstate.actor` and an `@xstate.snapshot` for each live actor.
   */
  inspect(observer: Observer<InspectionEvent>): XSubscription {
    if (this.inspectors.size === 0) {
      for (const shard of this.shards)
        shard.inspection = shard.actor.system.inspect(this.inspectionHub)
    }
    this.inspectors.add(observer)
    for (const { actor } of this.liveSessions.values()) {
      const snapshot = actor.getSnapshot()
      observer.next?.({ type: '@xstate.actor', actorRef: actor, rootId: actor.sessionId })
      observer.next?.({
        type: '@xstate.snapshot',
        actorRef: actor,
        rootId: actor.sessionId,
        snapshot,
        event: { type: 'xstate.init' },
      })
    }
    return {
      unsubscribe: () => {
        if (!this.inspectors.delete(observer) || this.inspectors.size > 0) return
        for (const shard of this.shards) {
          shard.inspection?.unsubscribe()
          shard.inspection = undefined
        }
      },
    }
  }

  private shardForNewSession(): Shard {
    if (!this.shard || this.shard.placed >= SHARD_SIZE) {
      const actor = createActor(shardMachine, { clock: this.options.clock })
      actor.start()
      const shard: Shard = { actor, placed: 0, live: 0, inspection: undefined }
      if (this.inspectors.size > 0) shard.inspection = actor.system.inspect(this.inspectionHub)
      this.shards.add(shard)
      this.shard = shard
    }
    this.shard.placed++
    return this.shard
  }

  /** A full shard whose sessions have all ended is stopped; nothing else refers to it. */
  private releaseShard(shard: Shard): void {
    shard.live--
    if (shard.live > 0 || shard === this.shard) return
    this.shards.delete(shard)
    stopShardLater(shard)
  }

  /** Stops the shard that takes new sessions (at shutdown, once every session has ended). */
  close(): void {
    for (const shard of this.shards) stopShardLater(shard)
    this.shards.clear()
    this.shard = undefined
  }

  private readonly inspectionHub: Observer<InspectionEvent> = {
    next: (event) => {
      // A shard only lends its actor system (it hears its children end): not an actor to show.
      if ((event.actorRef as { logic?: unknown }).logic === shardMachine) return
      for (const inspector of this.inspectors) {
        try {
          inspector.next?.(event)
        } catch (error) {
          this.options.onListenerError?.(error)
        }
      }
    },
  }

  /** Moves the current session aside (it is being torn down) so a new one can take its place. */
  retireCurrent(campaignId: string): LiveSession | undefined {
    const record = this.campaigns.get(campaignId)
    const session = record?.current
    if (!record || !session) return undefined
    record.current = undefined
    record.draining ??= new Map()
    record.draining.set(session.sessionId, session)
    return session
  }

  /**
   * Records the end of a session (its actor reached `cleaned`, or failed with a bug) and leaves
   * its tombstone. Returns the campaign's current session if it was waiting for this one.
   */
  endSession(sessionId: string, bug?: unknown): { ended?: Tombstone; successor?: LiveSession } {
    const session = this.liveSessions.get(sessionId)
    if (!session) return {}
    this.liveSessions.delete(sessionId)
    this.statusCounts[session.status]--
    this.releaseShard(session.shard)
    // A campaign with a live session is never forgotten.
    const record = this.campaigns.get(session.campaignId)!
    if (record.current === session) record.current = undefined
    record.draining?.delete(sessionId)
    if (record.draining?.size === 0) record.draining = undefined

    const snapshot = session.actor.getSnapshot()
    const context = snapshot.context
    const endedAt = this.options.now()
    const history = context.history
    const tombstone: Tombstone = {
      campaignId: session.campaignId,
      sessionId,
      status: bug ? 'failed' : outcomeOf(history),
      reason: bug ? 'engine_failed' : context.reason,
      failure: bug
        ? {
            code: 'engine_failed',
            message: 'The session stopped because of an internal error.',
            detail: 'internal error',
          }
        : session.failure,
      history: bug
        ? [
            ...history,
            { status: 'failed', at: endedAt, reason: 'engine_failed', detail: 'internal error' },
          ]
        : history,
      endedAt,
    }
    if (!record.last || record.last.endedAt <= endedAt) record.last = tombstone
    this.tombstones.set(sessionId, tombstone)
    this.tombstoneOrder.push(sessionId)
    this.evictTombstones()

    if (session.endWaiters) for (const resolve of session.endWaiters) resolve()
    const successor =
      !record.draining && record.current && isWaiting(record.current) ? record.current : undefined
    return { ended: tombstone, successor }
  }

  /**
   * Resolves once each of these sessions has ended (its engine is gone). Only these: a session
   * started meanwhile is not waited for, so the wait is bounded by their teardowns.
   */
  whenEnded(sessions: readonly LiveSession[]): Promise<void> {
    const ends: Array<Promise<void>> = []
    for (const session of sessions) {
      if (this.liveSessions.get(session.sessionId) !== session) continue
      ends.push(new Promise((resolve) => (session.endWaiters ??= []).push(resolve)))
    }
    return Promise.all(ends).then(() => undefined)
  }

  lastEnded(campaignId: string): Tombstone | undefined {
    return this.campaigns.get(campaignId)?.last
  }

  view(campaignId: string): CampaignView {
    const record = this.campaigns.get(campaignId)
    const owner = this.ownerOf(campaignId) ?? null
    const lastActivity = record?.lastActivity ?? null
    const live = record?.current
    if (live) {
      const { context, value } = live.actor.getSnapshot()
      const status = statusOf(value)
      return {
        campaignId,
        owner,
        sessionId: live.sessionId,
        status,
        reason: context.reason,
        isConnected: status === 'ready',
        hasActiveSession: ACTIVE_STATUSES.has(status),
        lastActivity,
        expiresAt: context.phaseDeadline,
        history: context.history,
        qr: status === 'awaitingScan' ? context.qr : null,
      }
    }
    const last = record?.last
    return {
      campaignId,
      owner,
      sessionId: last?.sessionId ?? null,
      status: last?.status ?? 'idle',
      reason: last?.reason ?? null,
      isConnected: false,
      hasActiveSession: false,
      lastActivity,
      expiresAt: null,
      history: last?.history ?? [],
      qr: null,
    }
  }

  /**
   * A page of remembered campaigns, in the order they were first started (as remembered). It
   * costs the page, not the number of campaigns: a binary search in the creation order of all
   * campaigns or of the owner's, or a sort of the given `campaignIds`.
   */
  listCampaigns(query: CampaignQuery & { limit: number }): Page<CampaignView> {
    const { owner, campaignIds, after, limit } = query
    let page: Page<CampaignRecord>
    if (campaignIds) {
      const records: CampaignRecord[] = []
      for (const campaignId of campaignIds) {
        const record = this.campaigns.get(campaignId)
        if (record && (owner === undefined || record.owner === owner)) records.push(record)
      }
      records.sort((a, b) => a.position - b.position)
      page = pageAfter(records, after, limit)
    } else {
      const order = owner === undefined ? this.listing : this.listingByOwner.get(owner)
      page = order ? order.page(after, limit) : { entries: [], next: null }
    }
    return {
      entries: page.entries.map((record) => this.view(record.campaignId)),
      next: page.next,
    }
  }

  stats(): Pick<SessionStats, 'live' | 'byStatus'> {
    return { live: this.liveSessions.size, byStatus: { ...this.statusCounts } }
  }

  /** Subscribes with a replay of the current state; undefined for an unknown session. */
  subscribe(target: SubscriptionTarget, listener: SessionListener): Subscription | undefined {
    if ('campaignId' in target) {
      const view = this.view(target.campaignId)
      this.replay(view, listener)
      return addListener(this.campaignListeners, target.campaignId, listener)
    }
    const live = this.liveSessions.get(target.sessionId)
    const tombstone = live ? undefined : this.tombstones.get(target.sessionId)
    if (!live && !tombstone) return undefined
    const campaignId = (live ?? tombstone)!.campaignId
    const view =
      live && this.campaigns.get(campaignId)?.current === live
        ? this.view(campaignId)
        : this.viewOfSession(live, tombstone)
    this.replay(view, listener)
    return addListener(this.sessionListeners, target.sessionId, listener)
  }

  /** Sees every event of every campaign, without replay (for metrics). */
  observe(listener: SessionListener): Subscription {
    this.observers.add(listener)
    return { unsubscribe: () => this.observers.delete(listener) }
  }

  private viewOfSession(
    live: LiveSession | undefined,
    tombstone: Tombstone | undefined
  ): CampaignView {
    if (live) {
      const { context, value } = live.actor.getSnapshot()
      const status = statusOf(value)
      return {
        ...this.view(live.campaignId),
        sessionId: live.sessionId,
        status,
        reason: context.reason,
        isConnected: status === 'ready',
        hasActiveSession: ACTIVE_STATUSES.has(status),
        expiresAt: context.phaseDeadline,
        history: context.history,
        qr: status === 'awaitingScan' ? context.qr : null,
      }
    }
    const t = tombstone!
    return {
      ...this.view(t.campaignId),
      sessionId: t.sessionId,
      status: t.status,
      reason: t.reason,
      isConnected: false,
      hasActiveSession: false,
      expiresAt: null,
      history: t.history,
      qr: null,
    }
  }

  private replay(view: CampaignView, listener: SessionListener): void {
    const base = { campaignId: view.campaignId, sessionId: view.sessionId, at: this.options.now() }
    const send = (event: SessionEvent) => this.deliver(listener, event)
    send({
      ...base,
      seq: ++this.seq,
      type: 'subscribed',
      status: view.status,
      reason: view.reason,
      isConnected: view.isConnected,
    })
    if (view.qr) {
      send({ ...base, seq: ++this.seq, type: 'qr', ...view.qr })
    } else if (view.status === 'ready') {
      send({ ...base, seq: ++this.seq, type: 'ready' })
    } else if (!view.hasActiveSession && view.sessionId) {
      const failure = view.sessionId ? this.tombstones.get(view.sessionId)?.failure : undefined
      const live = view.sessionId ? this.liveSessions.get(view.sessionId)?.failure : undefined
      const ended = failure ?? live
      if (ended) send({ ...base, seq: ++this.seq, type: 'error', ...ended })
    }
  }

  private readonly onEmitted = (emitted: CampaignEmitted): void => {
    const session = this.liveSessions.get(emitted.sessionId)
    if (session) this.publish(session, emitted)
  }

  private publish(session: LiveSession, emitted: CampaignEmitted): void {
    const record = this.campaigns.get(session.campaignId)
    if (record) record.lastActivity = emitted.at
    const base = {
      campaignId: session.campaignId,
      sessionId: session.sessionId,
      seq: ++this.seq,
      at: emitted.at,
    }
    let event: SessionEvent
    switch (emitted.type) {
      case 'status': {
        this.statusCounts[session.status]--
        this.statusCounts[emitted.status]++
        session.status = emitted.status
        if (emitted.status === 'ready' && record) {
          this.linkedOwners.set(record.campaignId, record.owner)
        }
        const teardown =
          emitted.status === 'cleaned' ? session.actor.getSnapshot().context.teardown : null
        event = {
          ...base,
          type: 'status',
          status: emitted.status,
          reason: emitted.reason,
          isConnected: emitted.status === 'ready',
          ...(teardown ? { teardown } : {}),
        }
        break
      }
      case 'qr':
        event = {
          ...base,
          type: 'qr',
          qr: emitted.qr,
          attempt: emitted.attempt,
          expiresAt: emitted.expiresAt,
        }
        break
      case 'ready':
        event = { ...base, type: 'ready' }
        break
      case 'error':
        session.failure = { code: emitted.code, message: emitted.message, detail: emitted.detail }
        event = { ...base, type: 'error', ...session.failure }
        break
    }
    for (const listener of this.observers) this.deliver(listener, event)
    const byCampaign = this.campaignListeners.get(session.campaignId)
    if (byCampaign) for (const listener of byCampaign) this.deliver(listener, event)
    const bySession = this.sessionListeners.get(session.sessionId)
    if (bySession) for (const listener of bySession) this.deliver(listener, event)
  }

  /** A listener's bug must never break the session or the other listeners. */
  private deliver(listener: SessionListener, event: SessionEvent): void {
    try {
      listener(event)
    } catch (error) {
      this.options.onListenerError?.(error)
    }
  }

  /** Starts remembering a campaign (when its first session starts). */
  private remember(campaignId: string, owner: string): CampaignRecord {
    const record: CampaignRecord = {
      campaignId,
      owner,
      position: this.nextPosition++,
      forgotten: false,
      current: undefined,
      draining: undefined,
      last: undefined,
      lastActivity: null,
    }
    this.campaigns.set(campaignId, record)
    this.listing.add(record)
    let owned = this.listingByOwner.get(owner)
    if (!owned) {
      owned = new CreationOrder()
      this.listingByOwner.set(owner, owned)
    }
    owned.add(record)
    return record
  }

  /** Forgets a campaign with no live session, and its owner, with its last tombstone. */
  private forget(record: CampaignRecord): void {
    record.forgotten = true
    this.campaigns.delete(record.campaignId)
    this.listing.noteForgotten()
    const owned = this.listingByOwner.get(record.owner)!
    owned.noteForgotten()
    if (owned.size === 0) this.listingByOwner.delete(record.owner)
  }

  /** Drops the oldest tombstones past the count bound or the age bound. */
  private evictTombstones(): void {
    const oldestAllowed = this.options.now() - this.options.tombstoneTtlMs
    while (this.tombstoneOrder.length > this.tombstoneHead) {
      const oldest = this.tombstones.get(this.tombstoneOrder[this.tombstoneHead]!)!
      if (this.tombstones.size <= this.options.maxTombstones && oldest.endedAt >= oldestAllowed) {
        break
      }
      this.tombstoneHead++
      this.tombstones.delete(oldest.sessionId)
      const record = this.campaigns.get(oldest.campaignId)
      if (record?.last === oldest) {
        record.last = undefined
        if (!record.current && !record.draining) this.forget(record)
      }
    }
    // Drop the consumed head of the queue once it is the larger part.
    if (this.tombstoneHead > 1024 && this.tombstoneHead * 2 > this.tombstoneOrder.length) {
      this.tombstoneOrder = this.tombstoneOrder.slice(this.tombstoneHead)
      this.tombstoneHead = 0
    }
  }
}

function emptyStatusCounts(): Record<SessionStatus, number> {
  return Object.fromEntries(SESSION_STATUSES.map((status) => [status, 0])) as Record<
    SessionStatus,
    number
  >
}

/**
 * A session's end reaches us from inside its actor's completion, before XState relays the done
 * event to the shard; stopping the shard a microtask later lets that relay land.
 */
function stopShardLater(shard: Shard): void {
  queueMicrotask(() => {
    shard.inspection?.unsubscribe()
    shard.actor.stop()
  })
}

/** The status a finished session is remembered by: how it ended, not only that it did. */
function outcomeOf(history: HistoryEntry[]): SessionStatus {
  for (let i = history.length - 1; i >= 0; i--) {
    const status = history[i]!.status
    if (status === 'timedOut' || status === 'failed') return status
  }
  return 'cleaned'
}

function isWaiting(session: LiveSession): boolean {
  return session.actor.getSnapshot().matches({ initializing: 'waitingForPredecessor' })
}

function addListener(
  index: Map<string, Set<SessionListener>>,
  key: string,
  listener: SessionListener
): Subscription {
  let listeners = index.get(key)
  if (!listeners) {
    listeners = new Set()
    index.set(key, listeners)
  }
  listeners.add(listener)
  return {
    unsubscribe() {
      const current = index.get(key)
      if (!current) return
      current.delete(listener)
      if (current.size === 0) index.delete(key)
    },
  }
}
