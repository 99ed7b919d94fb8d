/**
 * The session core's side of the durable store: what it loads at start and what it writes as
 * sessions change.
 *
 * - At start (`load`), every campaign's owner is kept (a restart never hands a campaign, or its
 *   saved WhatsApp login, to whoever asks first), its last session comes back as a tombstone, and
 *   the campaigns that were linked and wanted `running` are returned for the restore.
 * - A request for a campaign the process does not know waits for its claim (`claim`), which is
 *   durable before it resolves: the answer (202) follows it, so an acknowledged owner is never
 *   lost. A campaign already known costs no database round trip.
 * - Everything else is written behind (`setWanted`, `setLinked`, `saveSession` return at once):
 *   the wanted state on each request, cleanup and unlink; linked on `ready`, unlinked on a logout
 *   from the phone or an unlink; each session's record on each status change.
 *
 * @module
 */
import { parseProxy, type ProxySettings } from '../proxy.ts'
import type { CampaignTable } from './campaignTable.ts'
import { describeFailure, type DeadlineSettings } from './messages.ts'
import type { SessionStore, StoredCampaign, StoredSession, WantedState } from './sessionStore.ts'
import {
  FAILURE_REASONS,
  SESSION_REASONS,
  SESSION_STATUSES,
  type FailureReason,
  type HistoryEntry,
  type SessionReason,
  type SessionStatus,
} from './status.ts'
import { outcomeOf, type Tombstone } from './tombstones.ts'
import type { SessionEvent } from './api.ts'

export interface DurabilityOptions {
  store: SessionStore
  registry: CampaignTable
  timeouts: DeadlineSettings
  now: () => number
  /**
   * Other processes write the same campaigns (a cluster): what this one remembers of a campaign's
   * flags may be stale, so every change is written, changed here or not.
   */
  sharedStore?: boolean
}

/** Campaigns read per page at start. */
const LOAD_PAGE = 1_000

/** What the process knows of a campaign's durable flags, so unchanged ones are not rewritten. */
interface Flags {
  /** Null when not known (another process claimed the campaign): the next change is written. */
  wanted: WantedState | null
  linked: boolean | null
}

export class Durability {
  private readonly flags = new Map<string, Flags>()
  /** Claims in flight, one per campaign: concurrent first requests share it. */
  private readonly claims = new Map<string, Promise<string>>()

  constructor(private readonly options: DurabilityOptions) {}

  /**
   * Reads every campaign: keeps its owner and flags, recalls its last session. Resolves with the
   * campaigns to restore (linked and wanted `running`), the most recently active first.
   */
  async load(): Promise<string[]> {
    const campaigns: StoredCampaign[] = []
    let after: string | undefined
    for (;;) {
      const page = await this.options.store.listCampaigns({ after, limit: LOAD_PAGE })
      campaigns.push(...page)
      if (page.length < LOAD_PAGE) break
      after = page[page.length - 1]!.campaignId
    }
    const lastActive = (campaign: StoredCampaign) => campaign.lastSession?.updatedAt ?? 0
    // Oldest first: tombstones are bounded, and the oldest are the ones to go.
    campaigns.sort((a, b) => lastActive(a) - lastActive(b))
    const now = this.options.now()
    for (const campaign of campaigns) {
      this.flags.set(campaign.campaignId, { wanted: campaign.wanted, linked: campaign.linked })
      // In a cluster a session not ended may well run on another node: its node's events (or the
      // failover's node_lost) say how it is, never a tombstone guessed here.
      const open = campaign.lastSession?.endedAt === null && this.options.sharedStore === true
      const last =
        campaign.lastSession && !open ? this.tombstoneOf(campaign.lastSession, now) : undefined
      this.options.registry.recall(campaign.campaignId, campaign.owner, last)
      const proxy = proxyFromStore(campaign.proxy)
      if (proxy) this.options.registry.setProxy(campaign.campaignId, proxy)
    }
    return campaigns
      .filter((campaign) => campaign.linked && campaign.wanted === 'running')
      .map((campaign) => campaign.campaignId)
      .reverse()
  }

  /** The campaign's owner is known to this process (loaded or claimed): no claim needed. */
  isKnown(campaignId: string): boolean {
    return this.flags.has(campaignId)
  }

  /**
   * Claims the campaign for `userId` unless it has an owner; resolves with its owner once that is
   * durable. Rejects if the store cannot say (the request is refused, nothing started).
   */
  claim(campaignId: string, userId: string): Promise<string> {
    const pending = this.claims.get(campaignId)
    if (pending) return pending
    const claim = this.options.store
      .claim(campaignId, userId)
      .then(({ owner, created }) => {
        this.options.registry.keepOwner(campaignId, owner)
        if (!this.flags.has(campaignId)) {
          this.flags.set(
            campaignId,
            created ? { wanted: 'running', linked: false } : unknownFlags()
          )
        }
        return owner
      })
      .finally(() => this.claims.delete(campaignId))
    this.claims.set(campaignId, claim)
    return claim
  }

  setWanted(campaignId: string, wanted: WantedState): void {
    const flags = this.flags.get(campaignId)
    if (!flags || (flags.wanted === wanted && !this.options.sharedStore)) return
    flags.wanted = wanted
    this.options.store.setWanted(campaignId, wanted)
  }

  setLinked(campaignId: string, linked: boolean): void {
    const flags = this.flags.get(campaignId)
    if (!flags || (flags.linked === linked && !this.options.sharedStore)) return
    flags.linked = linked
    this.options.store.setLinked(campaignId, linked)
  }

  /** Writes the campaign's own proxy (null: none), credentials included: the engine needs them. */
  setProxy(campaignId: string, proxy: ProxySettings | null): void {
    if (!this.flags.has(campaignId)) return
    this.options.store.setProxy(campaignId, proxy ? JSON.stringify(proxy) : null)
  }

  /**
   * Takes the campaign as the store has it now (another process ran it meanwhile): its owner,
   * flags and proxy replace what this process remembered.
   */
  adopt(campaign: StoredCampaign): void {
    const { campaignId } = campaign
    this.flags.set(campaignId, { wanted: campaign.wanted, linked: campaign.linked })
    this.options.registry.keepOwner(campaignId, campaign.owner)
    this.options.registry.setProxy(campaignId, proxyFromStore(campaign.proxy))
  }

  isLinked(campaignId: string): boolean {
    return this.flags.get(campaignId)?.linked ?? false
  }

  wanted(campaignId: string): WantedState | null {
    return this.flags.get(campaignId)?.wanted ?? null
  }

  /** Writes what a status change says: the session's record, and linked or not. */
  readonly record = (event: SessionEvent): void => {
    if (event.type !== 'status' || !event.sessionId) return
    const state = this.options.registry.sessionState(event.sessionId)
    if (!state || !this.flags.has(state.campaignId)) return
    const { history } = state
    this.options.store.saveSession({
      sessionId: event.sessionId,
      campaignId: state.campaignId,
      status: state.status,
      reason: state.reason,
      detail: state.detail,
      history,
      startedAt: history[0]?.at ?? event.at,
      updatedAt: event.at,
      endedAt: event.status === 'cleaned' ? event.at : null,
      lastSeenAlive: state.lastSeenAlive,
      node: event.type === 'status' ? event.node : null,
    })
    if (event.status === 'ready') this.setLinked(state.campaignId, true)
    else if (event.reason === 'logged_out') this.setLinked(state.campaignId, false)
  }

  /**
   * A stored session as the tombstone it leaves; one the process died under counts as shut down.
   * Its status is its outcome, read from its history as for a session that ends in this process:
   * the record's own status is the last one written (`cleaned` for every ended session).
   */
  private tombstoneOf(stored: StoredSession, now: number): Tombstone {
    const history = stored.history.flatMap(toHistoryEntry)
    const ended = stored.endedAt !== null
    const reason = isReason(stored.reason) ? stored.reason : ended ? null : 'shutdown'
    if (!ended) {
      history.push({ status: 'cleaned', at: stored.updatedAt, reason: 'shutdown' })
    }
    const status = outcomeOf(history)
    const code = status !== 'cleaned' && isFailureReason(reason) ? reason : null
    return {
      campaignId: stored.campaignId,
      sessionId: stored.sessionId,
      status,
      reason,
      failure: code
        ? {
            code,
            message: describeFailure(code, this.options.timeouts, null),
            detail: stored.detail,
          }
        : null,
      history,
      endedAt: Math.min(stored.endedAt ?? stored.updatedAt, now),
      ...(typeof stored.lastSeenAlive === 'number' ? { lastSeenAlive: stored.lastSeenAlive } : {}),
      ...(typeof stored.node === 'string' ? { node: stored.node } : {}),
    }
  }
}

/** A campaign another process claimed first: its flags are not known here. */
function unknownFlags(): Flags {
  return { wanted: null, linked: null }
}

const REASONS: ReadonlySet<string> = new Set(SESSION_REASONS)
const FAILURE_CODES: ReadonlySet<string> = new Set(FAILURE_REASONS)
const STATUSES: ReadonlySet<string> = new Set(SESSION_STATUSES)

function isReason(value: string | null | undefined): value is SessionReason {
  return typeof value === 'string' && REASONS.has(value)
}

function isFailureReason(value: string | null): value is FailureReason {
  return value !== null && FAILURE_CODES.has(value)
}

/** A stored history entry this version can show (an unknown status is left out). */
function toHistoryEntry(entry: StoredSession['history'][number]): HistoryEntry[] {
  if (!STATUSES.has(entry.status)) return []
  const shown: HistoryEntry = { status: entry.status as SessionStatus, at: entry.at }
  if (isReason(entry.reason)) shown.reason = entry.reason
  if (entry.detail) shown.detail = entry.detail
  return [shown]
}

/**
 * A proxy as the store gives it back: checked, not trusted (another version may have written it).
 * One that does not parse is dropped, and the campaign falls back on `WA_PROXY`, if any.
 */
function proxyFromStore(text: string | null | undefined): ProxySettings | null {
  if (!text) return null
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return null
  }
  if (typeof value !== 'object' || value === null) return null
  const { server, credentials } = value as { server?: unknown; credentials?: unknown }
  if (typeof server !== 'string') return null
  const parsed = parseProxy(server)
  if (!parsed.ok || parsed.proxy.server !== server) return null
  if (credentials === undefined) return { server }
  const { username, password } = (credentials ?? {}) as { username?: unknown; password?: unknown }
  if (typeof username !== 'string' || typeof password !== 'string') return null
  return { server, credentials: { username, password } }
}
