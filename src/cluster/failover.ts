/**
 * Failover: every node looks for campaigns nobody runs that should run, and takes its share.
 *
 * Every `TTL / 3` (and at once when another node announces a handover) a node asks the database
 * for orphans: leases that expired unreleased (their node died, or was cut off and fenced
 * itself), leases released as a handover (a drain, a graceful shutdown), and linked campaigns
 * wanted `running` that have no lease. It takes at most its share (the orphans divided by the
 * live nodes, within its free capacity and `RESTORE_CONCURRENCY` launches in flight), each by
 * winning its lease (one winner per campaign, whatever the others do), then:
 * - a linked campaign wanted `running` is restored here, with its saved login (the engine waits
 *   out the takeover delay of an expired lease itself);
 * - a session that was waiting for a scan on a node that died ends `failed` with `node_lost`:
 *   its record is closed in the store, every node's subscribers are told, and the webhooks
 *   (this node commits the events, as the node that ran it would have);
 * - anything else is let go.
 *
 * @module
 */
import type { Logger } from '../logger.ts'
import type { SessionEvent, StartResult } from '../session/api.ts'
import type { CampaignRecord, SessionRecord } from '../store/index.ts'
import type { CampaignLeases, Fence } from './campaignLeases.ts'
import type { PublishedSessionEvent } from './clusterEvents.ts'

export interface Orphan {
  campaignId: string
  kind: 'expired' | 'handover' | 'unleased'
  previousOwner: string | null
}

export interface FailoverOptions {
  leases: CampaignLeases
  orphans(limit: number): Promise<Orphan[]>
  /** Live nodes that take sessions (not draining), this one included. */
  takingNodes(): Promise<number>
  sessions: {
    reload(
      campaignId: string
    ): Promise<Pick<CampaignRecord, 'owner' | 'wanted' | 'linked' | 'lastSession'> | undefined>
    requestSession(request: {
      campaignId: string
      caller: { userId: string; admin: boolean }
    }): Promise<StartResult>
    stats(): { live: number; maxSessions: number; accepting: boolean }
    observe(listener: (event: SessionEvent) => void): { unsubscribe(): void }
  }
  /** Closes a session record that the dead node left open. */
  saveSession(record: SessionRecord, fence: Fence): void
  /**
   * Tells every node (this one included) an event of a session on another node, and this node's
   * webhooks; `detail` is the history's detail of a failure status (null for the others).
   */
  announce(
    campaignId: string,
    fence: Fence,
    event: PublishedSessionEvent,
    detail: string | null
  ): void
  /** Restored sessions launching at once (`RESTORE_CONCURRENCY`). */
  concurrency: number
  /** The message of a `node_lost` failure. */
  nodeLostMessage: string
  now?: () => number
  logger: Logger
}

/** Orphans read per scan at most. */
const SCAN_LIMIT = 200
/** How soon orphans left by a scan are looked at again (plus up to as much at random). */
const SOON_MS = 250

export class Failover {
  /** Restored sessions not yet settled (QR shown, ready, or ended). */
  private readonly inFlight = new Set<string>()
  private scanning: Promise<void> | undefined
  private again = false
  private stopped = false
  private soon: ReturnType<typeof setTimeout> | undefined
  private readonly observer: { unsubscribe(): void }
  readonly counts = { restored: 0, lost: 0 }

  constructor(private readonly options: FailoverOptions) {
    this.observer = options.sessions.observe((event) => {
      if (!event.sessionId || !this.inFlight.has(event.sessionId)) return
      const settled =
        event.type === 'qr' ||
        event.type === 'ready' ||
        (event.type === 'status' && !event.hasActiveSession)
      if (settled && this.inFlight.delete(event.sessionId)) this.scan()
    })
  }

  /** Scans now (again once the scan in progress ends, if one is). */
  scan(): void {
    if (this.stopped) return
    if (this.scanning) {
      this.again = true
      return
    }
    this.scanning = this.scanOnce()
      .catch((error: unknown) => this.options.logger.warn({ err: error }, 'failover scan failed'))
      .finally(() => {
        this.scanning = undefined
        if (this.again) {
          this.again = false
          this.scan()
        }
      })
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.soon) clearTimeout(this.soon)
    this.observer.unsubscribe()
    await this.scanning
  }

  private async scanOnce(): Promise<void> {
    const { sessions, concurrency } = this.options
    const stats = sessions.stats()
    if (!stats.accepting) return
    const room = Math.min(stats.maxSessions - stats.live, concurrency - this.inFlight.size)
    if (room <= 0) return
    const orphans = await this.options.orphans(SCAN_LIMIT)
    if (orphans.length === 0) return
    const nodes = Math.max(1, await this.options.takingNodes())
    const share = Math.min(room, Math.ceil(orphans.length / nodes))
    let taken = 0
    let tried = 0
    for (const orphan of shuffled(orphans)) {
      if (taken >= share || this.stopped) break
      tried++
      if (await this.adopt(orphan)) taken++
    }
    // Its share taken and orphans left: the other nodes take theirs meanwhile, and what nobody
    // took is looked at again soon (not a renewal interval later).
    if (tried < orphans.length) this.scanSoon()
  }

  /** A scan in a moment (randomized, so the nodes do not all ask at once). */
  private scanSoon(): void {
    if (this.stopped || this.soon) return
    this.soon = setTimeout(
      () => {
        this.soon = undefined
        this.scan()
      },
      SOON_MS + Math.random() * SOON_MS
    )
    this.soon.unref()
  }

  /** True when it took the campaign (restored it, or closed its lost session). */
  private async adopt(orphan: Orphan): Promise<boolean> {
    const { leases, sessions, logger } = this.options
    const { campaignId } = orphan
    const lease = await leases.ensure(campaignId)
    if (!lease.ok) return false
    const fence = leases.fenceOf(campaignId)!
    let stored: Pick<CampaignRecord, 'owner' | 'wanted' | 'linked' | 'lastSession'> | undefined
    try {
      stored = await sessions.reload(campaignId)
    } catch (error) {
      logger.warn({ err: error, campaignId }, 'failover: the campaign could not be read')
      await leases.release(campaignId, { handover: orphan.kind !== 'expired' })
      return false
    }
    if (stored?.linked && stored.wanted === 'running') {
      const result = await sessions.requestSession({
        campaignId,
        caller: { userId: stored.owner, admin: false },
      })
      if (result.ok) {
        if (result.outcome === 'started' && result.view.sessionId) {
          this.inFlight.add(result.view.sessionId)
        }
        this.counts.restored++
        logger.info(
          { campaignId, from: orphan.previousOwner, kind: orphan.kind },
          'failover: restoring a linked campaign here'
        )
        return true
      }
      // Full or shutting down: let it go for another node (a handover keeps it findable).
      await leases.release(campaignId, { handover: true })
      return false
    }
    if (orphan.kind === 'expired' && stored?.lastSession && stored.lastSession.endedAt === null) {
      this.endLost(stored.lastSession, orphan.previousOwner ?? 'unknown', stored.owner, fence)
    }
    await leases.release(campaignId)
    return true
  }

  /** The session was live on a node that is gone: it ends `failed`, `node_lost`, for everyone. */
  private endLost(session: SessionRecord, node: string, owner: string, fence: Fence): void {
    const at = (this.options.now ?? Date.now)()
    const detail = `node ${node} stopped renewing its lease`
    const message = this.options.nodeLostMessage
    this.options.saveSession(
      {
        ...session,
        status: 'cleaned',
        reason: 'node_lost',
        detail,
        history: [
          ...session.history,
          { status: 'failed', at, reason: 'node_lost', detail },
          { status: 'cleaned', at, reason: 'node_lost' },
        ],
        updatedAt: at,
        endedAt: at,
        node,
      },
      fence
    )
    const base = { campaignId: session.campaignId, sessionId: session.sessionId, at, node }
    const events: Array<PublishedSessionEvent['event']> = [
      {
        ...base,
        type: 'status',
        status: 'failed',
        reason: 'node_lost',
        isConnected: false,
        hasActiveSession: false,
      },
      { ...base, type: 'error', code: 'node_lost', message, detail },
      {
        ...base,
        type: 'status',
        status: 'cleaned',
        reason: 'node_lost',
        isConnected: false,
        hasActiveSession: false,
      },
    ]
    for (const event of events) {
      const failure = event.type === 'status' && event.status === 'failed'
      this.options.announce(
        session.campaignId,
        fence,
        { node, owner, event, expiresAt: null, lastSeenAlive: session.lastSeenAlive },
        failure ? detail : null
      )
    }
    this.counts.lost++
    this.options.logger.warn(
      { campaignId: session.campaignId, node },
      'failover: a session waiting on a lost node ended node_lost'
    )
  }
}

function shuffled<T>(items: readonly T[]): T[] {
  const copy = [...items]
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[copy[i], copy[j]] = [copy[j]!, copy[i]!]
  }
  return copy
}
