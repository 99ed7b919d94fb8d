/**
 * The supervisor's table of campaigns: who owns which campaign, the live session of each (and
 * any still being torn down), the tombstone of its last ended session, and the paged listing.
 * It creates the campaign actors (in `Shards`), keeps their tombstones (`Tombstones`), shows
 * them (`views.ts`) and relays what they emit to subscribers (`SessionEventBus`).
 *
 * A campaign is remembered (its record, with its owner) while it has a live session or a
 * tombstone, and forgotten with its last tombstone: nothing per campaign outlives the tombstones'
 * bound, and a refused request, which starts no session, keeps nothing. The one exception is
 * the owner of a campaign that was ever linked (reached `ready`): its WhatsApp login stays
 * saved, so forgetting who owns it would hand the login to whoever asks next. Those owners are
 * kept for the life of the process (a short string each, and only a phone's scan adds one).
 * With a durable store every owner is kept (`keepOwner`): the store keeps it, so must the table.
 * A campaign the store remembers comes back with its last session as a tombstone (`recall`).
 *
 * In a cluster, the sessions that run on other nodes are shown too (`applyRemote`, kept in
 * `RemoteSessions`): a campaign's view is its session here, else its session on another node, else
 * its last ended session, and subscribers get the events of all of them with this table's `seq`.
 * The observers (`observe`) get only this node's own events.
 *
 * Why not `spawnChild`: XState copies a machine's `snapshot.children` on every spawn and stop,
 * so one machine with N children costs O(N²) (10k children: 14.6 s to spawn). Each campaign
 * actor reports its end to the supervisor as `SESSION.ENDED` (or `SESSION.FAILED` for a bug),
 * and every operation here is a Map lookup: starting or ending a session costs the same with 10
 * sessions or 100,000.
 *
 * @module
 */
import type { ProxySettings } from '../proxy.ts'
import type { AnyActorRef, InspectionEvent, Observer, Subscription as XSubscription } from 'xstate'
import { createActor } from 'xstate'
import type { Clock } from '../clock.ts'
import type {
  CampaignQuery,
  CampaignView,
  RemoteSessionEvent,
  SessionEvent,
  SessionStats,
  Subscription,
  SubscriptionTarget,
} from './api.ts'
import {
  statusesTagged,
  type CampaignEmitted,
  type CampaignInput,
  type CampaignMachine,
  type CampaignTimeouts,
} from './campaignMachine.ts'
import { CreationOrder, pageAfter, type Page, type Positioned } from './creationOrder.ts'
import { SessionEventBus, type SessionListener } from './events.ts'
import {
  applyRemoteEvent,
  newRemoteSession,
  RemoteSessions,
  repeatsStatus,
  startsSession,
  type RemoteEvent,
  type RemoteSession,
} from './remoteSessions.ts'
import { Shards, type Shard } from './shards.ts'
import {
  SESSION_STATUSES,
  type HistoryEntry,
  type SessionFailure,
  type SessionReason,
  type SessionStatus,
} from './status.ts'
import { Tombstones, tombstoneOf, type Tombstone } from './tombstones.ts'
import { endedView, liveView, remoteView, type CampaignFacts } from './views.ts'
import { DEFAULT_LIVENESS, type LivenessSettings } from './liveness.ts'

type CampaignActor = ReturnType<typeof createActor<CampaignMachine>>

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

interface CampaignRecord extends Positioned {
  campaignId: string
  /** The user who first started a session for it (kept as long as the record). */
  owner: string
  /** The newest session of the campaign, until it ends. */
  current: LiveSession | undefined
  /** The session of the campaign that runs on another node, while it lives and none runs here. */
  remote: RemoteSession | undefined
  /** Older sessions still being torn down (replaced by `current`); created when needed. */
  draining: Map<string, LiveSession> | undefined
  /** The newest ended session. */
  last: Tombstone | undefined
  lastActivity: number | null
}

/** What a start request may set for the session it starts. */
export interface SessionSettings {
  /** Link with this phone number by a pairing code instead of a QR. */
  pairWithPhoneNumber?: string
  /** The campaign's proxy from now on (null: none); unchanged when absent. */
  proxy?: ProxySettings | null
}

export interface CampaignTableOptions {
  machine: CampaignMachine
  timeouts: CampaignTimeouts
  /** How ready sessions are probed (default: `DEFAULT_LIVENESS`). */
  liveness?: LivenessSettings
  /** The clock of every campaign actor's timers. */
  clock: Clock
  now: () => number
  /** How many ended sessions are remembered, and for how long. */
  maxTombstones: number
  tombstoneTtlMs: number
  /** Told when a subscriber's listener throws (the others still get the event). */
  onListenerError?: (error: unknown) => void
  /** This node's `NODE_ID` in a cluster, shown as the `node` of its sessions; absent outside one. */
  nodeId?: string
  /** Sessions of other nodes shown at most at once (default 100,000); past it the oldest is dropped. */
  maxRemoteSessions?: number
}

/** The default of `maxRemoteSessions`. */
const MAX_REMOTE_SESSIONS = 100_000

export class CampaignTable {
  private readonly campaigns = new Map<string, CampaignRecord>()
  /** Every campaign record, and each owner's, in the order they were created (for paging). */
  private readonly listing = new CreationOrder<CampaignRecord>()
  private readonly listingByOwner = new Map<string, CreationOrder<CampaignRecord>>()
  private nextPosition = 1
  private readonly liveSessions = new Map<string, LiveSession>()
  /**
   * Owners kept after their records are forgotten: of campaigns that were ever linked, and with a
   * durable store, of every campaign it keeps.
   */
  private readonly keptOwners = new Map<string, string>()
  /**
   * The proxies of campaigns that set one: only for campaigns with an owner, and kept as long as
   * the owner may be (a proxy silently forgotten would send a campaign's WhatsApp direct).
   */
  private readonly proxies = new Map<string, ProxySettings>()
  private readonly tombstones: Tombstones
  private readonly remoteSessions: RemoteSessions
  private readonly shards: Shards
  private readonly events: SessionEventBus
  /** Live sessions by status, kept as they change so stats() costs nothing at 100k sessions. */
  private readonly statusCounts = emptyStatusCounts()
  /** The statuses tagged `active`, for the `hasActiveSession` of each status event. */
  private readonly activeStatuses: ReadonlySet<SessionStatus>
  /** Liveness probes ended since the start (for metrics). */
  private readonly probes = { alive: 0, missed: 0 }

  constructor(private readonly options: CampaignTableOptions) {
    this.activeStatuses = statusesTagged(options.machine, 'active')
    this.tombstones = new Tombstones(options)
    this.remoteSessions = new RemoteSessions(options.maxRemoteSessions ?? MAX_REMOTE_SESSIONS)
    this.shards = new Shards({ clock: options.clock, onObserverError: options.onListenerError })
    this.events = new SessionEventBus(options.onListenerError)
  }

  get liveCount(): number {
    return this.liveSessions.size
  }

  /** Campaigns remembered: with a live session (here or on another node) or a tombstone. */
  get campaignCount(): number {
    return this.campaigns.size
  }

  /** Sessions of other nodes shown now, and those dropped because too many were. */
  get remoteCounts(): { live: number; dropped: number } {
    return { live: this.remoteSessions.size, dropped: this.remoteSessions.dropped }
  }

  ownerOf(campaignId: string): string | undefined {
    return this.campaigns.get(campaignId)?.owner ?? this.keptOwners.get(campaignId)
  }

  /** The campaign's proxy (`PUT …/settings`, or a start request's `proxy`); null: none set. */
  proxyOf(campaignId: string): ProxySettings | null {
    return this.proxies.get(campaignId) ?? null
  }

  /** Sets (null: removes) the proxy of a campaign that has an owner; false for one that has none. */
  setProxy(campaignId: string, proxy: ProxySettings | null): boolean {
    if (this.ownerOf(campaignId) === undefined) return false
    if (proxy) this.proxies.set(campaignId, proxy)
    else this.proxies.delete(campaignId)
    return true
  }

  /** Keeps the campaign's owner for the life of the process (the durable store's owners). */
  keepOwner(campaignId: string, owner: string): void {
    this.keptOwners.set(campaignId, owner)
  }

  /**
   * Remembers a campaign from before a restart, with its last session as a tombstone (bounded as
   * every tombstone is). Call oldest first, before any session of it starts.
   */
  recall(campaignId: string, owner: string, last: Tombstone | undefined): void {
    this.keepOwner(campaignId, owner)
    if (!last || this.campaigns.has(campaignId)) return
    const record = this.remember(campaignId, owner)
    record.last = last
    record.lastActivity = last.endedAt
    this.tombstones.add(last, this.options.now(), this.onTombstoneEvicted)
  }

  /** A live session as it stands now, for the durable store. */
  sessionState(sessionId: string):
    | {
        campaignId: string
        status: SessionStatus
        reason: SessionReason | null
        detail: string | null
        history: HistoryEntry[]
        lastSeenAlive: number | null
      }
    | undefined {
    const session = this.liveSessions.get(sessionId)
    if (!session) return undefined
    const { context } = session.actor.getSnapshot()
    return {
      campaignId: session.campaignId,
      status: session.status,
      reason: context.reason,
      detail: session.failure?.detail ?? context.detail,
      history: context.history,
      lastSeenAlive: context.lastSeenAliveAt,
    }
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
    owner: string,
    { pairWithPhoneNumber, proxy }: SessionSettings = {}
  ): LiveSession {
    const record =
      this.campaigns.get(campaignId) ??
      this.remember(campaignId, this.keptOwners.get(campaignId) ?? owner)
    // The lease of the campaign moved here: the session of the node that held it has ended.
    if (record.remote) this.endRemote(record, record.remote)
    // Before the engine starts: it reads the proxy as it starts.
    if (proxy !== undefined) this.setProxy(campaignId, proxy)
    const input: CampaignInput = {
      campaignId,
      sessionId,
      timeouts: this.options.timeouts,
      awaitPredecessor: (record.draining?.size ?? 0) > 0,
      liveness: this.options.liveness ?? DEFAULT_LIVENESS,
      ...(pairWithPhoneNumber !== undefined ? { pairWithPhoneNumber } : {}),
      ...(this.options.nodeId !== undefined ? { node: this.options.nodeId } : {}),
    }
    const shard = this.shards.place()
    const actor = createActor(this.options.machine, { id: sessionId, input, parent: shard.actor })
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
    const subscription = this.shards.inspect(observer)
    for (const { actor, shard } of this.liveSessions.values()) {
      const snapshot = actor.getSnapshot()
      // As XState would say it: the root of a campaign actor's system is its shard.
      const rootId = shard.actor.sessionId
      observer.next?.({ type: '@xstate.actor', actorRef: actor, rootId })
      observer.next?.({
        type: '@xstate.snapshot',
        actorRef: actor,
        rootId,
        snapshot,
        event: { type: 'xstate.init' },
      })
    }
    return subscription
  }

  /** Stops the shard that takes new sessions (at shutdown, once every session has ended). */
  close(): void {
    this.shards.close()
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
    this.shards.release(session.shard)
    // A campaign with a live session is never forgotten.
    const record = this.campaigns.get(session.campaignId)!
    if (record.current === session) record.current = undefined
    record.draining?.delete(sessionId)
    if (record.draining?.size === 0) record.draining = undefined

    const { context } = session.actor.getSnapshot()
    const endedAt = this.options.now()
    const tombstone = tombstoneOf(
      {
        campaignId: session.campaignId,
        sessionId,
        reason: context.reason,
        failure: session.failure,
        history: context.history,
        lastSeenAlive: context.lastSeenAliveAt,
        node: this.nodeId,
      },
      endedAt,
      bug
    )
    if (!record.last || record.last.endedAt <= endedAt) record.last = tombstone
    this.tombstones.add(tombstone, endedAt, this.onTombstoneEvicted)

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

  /** The campaign's session here, else the one on another node, else its last ended one. */
  view(campaignId: string): CampaignView {
    const record = this.campaigns.get(campaignId)
    const facts = this.factsOf(campaignId)
    const live = record?.current
    if (live) return liveView(facts, live.sessionId, live.actor.getSnapshot(), this.nodeId)
    if (record?.remote) return remoteView(facts, record.remote)
    return endedView(facts, record?.last)
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

  stats(): Pick<SessionStats, 'live' | 'byStatus' | 'probes'> {
    return {
      live: this.liveSessions.size,
      byStatus: { ...this.statusCounts },
      probes: { ...this.probes },
    }
  }

  /**
   * Subscribes with a replay of the current state; undefined for an unknown session. A session
   * that runs on another node is followed as one of this node's.
   */
  subscribe(target: SubscriptionTarget, listener: SessionListener): Subscription | undefined {
    const at = this.options.now()
    if ('campaignId' in target) {
      const view = this.view(target.campaignId)
      return this.events.subscribeToCampaign(view, this.failureOf(view), listener, at)
    }
    const view = this.sessionView(target.sessionId)
    if (!view) return undefined
    return this.events.subscribeToSession(
      target.sessionId,
      view,
      this.failureOf(view),
      listener,
      at
    )
  }

  /** Sees every event of the sessions this node runs, without replay (metrics, store, webhooks). */
  observe(listener: SessionListener): Subscription {
    return this.events.observe(listener)
  }

  /**
   * Applies an event of a session that runs on another node, and tells this node's subscribers
   * (never its observers: the node that runs the session stores it, counts it, delivers its
   * webhooks and tells the other nodes). Ignored when it can only be stale: a session runs here
   * (a node runs a campaign's session only while it holds the campaign's lease), the session
   * already ended, or it is a late word of an older session than the one shown. (The cluster's
   * listener drops what this process published itself; a session of an earlier process of this
   * node's name, ended by the failover here, is shown like any other node's.)
   * Returns the event as told here (with this table's `seq`), undefined when it was ignored.
   */
  applyRemote(remote: RemoteSessionEvent): SessionEvent | undefined {
    const { event } = remote
    if (event.type === 'subscribed' || event.sessionId === null) return undefined
    const { campaignId, sessionId } = event
    if (this.tombstones.get(sessionId)) return undefined
    let record = this.campaigns.get(campaignId)
    if (record?.current) return undefined
    let session = record?.remote
    if (session?.sessionId === sessionId && repeatsStatus(session, event)) return undefined
    if (session && session.sessionId !== sessionId) {
      if (!startsSession(event)) return undefined
      this.endRemote(record!, session)
      session = undefined
    }
    // Owners never change in a cluster (the store keeps them): the one known here stays.
    const owner = this.ownerOf(campaignId) ?? remote.owner
    this.keepOwner(campaignId, owner)
    record ??= this.remember(campaignId, owner)
    if (!session) {
      session = newRemoteSession(event, sessionId, remote.node, this.activeStatuses)
      record.remote = session
      this.remoteSessions.add(session, this.onRemoteDropped)
    }
    applyRemoteEvent(session, remote)
    record.lastActivity = event.at
    const relayed = this.numbered(event, session)
    this.events.relay(relayed)
    // The last thing a session's machine says: the session is over, its tombstone stays.
    if (event.type === 'status' && event.status === 'cleaned') this.endRemote(record, session)
    return relayed
  }

  /**
   * Forgets the sessions that run on `node` (it was declared dead): the node that takes their
   * campaigns over tells how they ended. Their campaigns show their last ended session again.
   */
  dropRemoteOf(node: string): void {
    for (const session of this.remoteSessions.deleteOfNode(node)) this.forgetRemote(session)
  }

  /** This node's name in a cluster; null outside one. */
  private get nodeId(): string | null {
    return this.options.nodeId ?? null
  }

  /** The view of one session: live here, live on another node, or ended. */
  private sessionView(sessionId: string): CampaignView | undefined {
    const live = this.liveSessions.get(sessionId)
    if (live) {
      const facts = this.factsOf(live.campaignId)
      return liveView(facts, sessionId, live.actor.getSnapshot(), this.nodeId)
    }
    const remote = this.remoteSessions.get(sessionId)
    if (remote) return remoteView(this.factsOf(remote.campaignId), remote)
    const tombstone = this.tombstones.get(sessionId)
    if (tombstone) return endedView(this.factsOf(tombstone.campaignId), tombstone)
    return undefined
  }

  /** A remote session's event with this table's `seq` (and its node, on a status). */
  private numbered(event: RemoteEvent, session: RemoteSession): SessionEvent {
    const seq = this.events.nextSeq()
    return event.type === 'status' ? { ...event, seq, node: session.node } : { ...event, seq }
  }

  /** A remote session ended (or was replaced): it leaves its tombstone, as a local one does. */
  private endRemote(record: CampaignRecord, session: RemoteSession): void {
    this.remoteSessions.delete(session)
    record.remote = undefined
    const endedAt = this.options.now()
    const tombstone = tombstoneOf(session, endedAt, undefined)
    if (!record.last || record.last.endedAt <= endedAt) record.last = tombstone
    this.tombstones.add(tombstone, endedAt, this.onTombstoneEvicted)
  }

  /** A remote session dropped without an end (its node is dead, or too many were shown). */
  private readonly onRemoteDropped = (session: RemoteSession): void => this.forgetRemote(session)

  private forgetRemote(session: RemoteSession): void {
    const record = this.campaigns.get(session.campaignId)
    if (record?.remote !== session) return
    record.remote = undefined
    this.forgetIfUnused(record)
  }

  private factsOf(campaignId: string): CampaignFacts {
    return {
      campaignId,
      owner: this.ownerOf(campaignId) ?? null,
      lastActivity: this.campaigns.get(campaignId)?.lastActivity ?? null,
    }
  }

  /** The failure a view's session ended with, if it did. */
  private failureOf(view: CampaignView): SessionFailure | undefined {
    if (!view.sessionId) return undefined
    return (
      this.tombstones.get(view.sessionId)?.failure ??
      this.liveSessions.get(view.sessionId)?.failure ??
      this.remoteSessions.get(view.sessionId)?.failure ??
      undefined
    )
  }

  private readonly onEmitted = (emitted: CampaignEmitted): void => {
    // Counted, not published: a probe changes nothing a subscriber is told.
    if (emitted.type === 'probe') {
      this.probes[emitted.outcome]++
      return
    }
    const session = this.liveSessions.get(emitted.sessionId)
    if (session) this.publish(session, emitted)
  }

  private publish(
    session: LiveSession,
    emitted: Exclude<CampaignEmitted, { type: 'probe' }>
  ): void {
    const record = this.campaigns.get(session.campaignId)
    if (record) record.lastActivity = emitted.at
    const base = {
      campaignId: session.campaignId,
      sessionId: session.sessionId,
      seq: this.events.nextSeq(),
      at: emitted.at,
    }
    let event: SessionEvent
    switch (emitted.type) {
      case 'status': {
        this.statusCounts[session.status]--
        this.statusCounts[emitted.status]++
        session.status = emitted.status
        if (emitted.status === 'ready' && record) {
          this.keptOwners.set(record.campaignId, record.owner)
        }
        const teardown =
          emitted.status === 'cleaned' ? session.actor.getSnapshot().context.teardown : null
        event = {
          ...base,
          type: 'status',
          status: emitted.status,
          reason: emitted.reason,
          isConnected: emitted.status === 'ready',
          hasActiveSession: this.activeStatuses.has(emitted.status),
          node: this.nodeId,
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
      case 'pairing_code':
        event = { ...base, type: 'pairing_code', code: emitted.code, expiresAt: emitted.expiresAt }
        break
      case 'ready':
        event = { ...base, type: 'ready' }
        break
      case 'error':
        session.failure = { code: emitted.code, message: emitted.message, detail: emitted.detail }
        event = { ...base, type: 'error', ...session.failure }
        break
    }
    this.events.publish(event)
  }

  /** Starts remembering a campaign (when its first session starts). */
  private remember(campaignId: string, owner: string): CampaignRecord {
    const record: CampaignRecord = {
      campaignId,
      owner,
      position: this.nextPosition++,
      forgotten: false,
      current: undefined,
      remote: undefined,
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

  /** A campaign with no live session is forgotten, and its owner, with its last tombstone. */
  private readonly onTombstoneEvicted = (evicted: Tombstone): void => {
    const record = this.campaigns.get(evicted.campaignId)
    if (record?.last !== evicted) return
    record.last = undefined
    this.forgetIfUnused(record)
  }

  /** Forgets a campaign with no session, here or elsewhere, and no tombstone. */
  private forgetIfUnused(record: CampaignRecord): void {
    if (record.current || record.draining || record.remote || record.last) return
    record.forgotten = true
    this.campaigns.delete(record.campaignId)
    this.listing.noteForgotten()
    const owned = this.listingByOwner.get(record.owner)!
    owned.noteForgotten()
    if (owned.size === 0) this.listingByOwner.delete(record.owner)
  }
}

function emptyStatusCounts(): Record<SessionStatus, number> {
  return Object.fromEntries(SESSION_STATUSES.map((status) => [status, 0])) as Record<
    SessionStatus,
    number
  >
}

function isWaiting(session: LiveSession): boolean {
  return session.actor.getSnapshot().matches({ initializing: 'waitingForPredecessor' })
}
