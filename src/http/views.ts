/**
 * Shapes the session service's views into the API's JSON: times become ISO strings, and only the
 * fields of the contract are exposed (never the owner, never the raw QR).
 *
 * @module
 */
import type { CampaignView, HistoryEntry, SessionReason, SessionStatus } from '../session/api.ts'

export interface HistoryEntryJson {
  status: SessionStatus
  at: string
  reason?: SessionReason
  detail?: string
}

export interface ConnectionJson {
  campaignId: string
  isConnected: boolean
  lastActivity: string | null
  hasActiveSession: boolean
  sessionId: string | null
  status: SessionStatus
  reason: SessionReason | null
  /**
   * Why a session that is no longer active ended, in the engine's words with a hint when the cause
   * is known (e.g. "This machine cannot reach web.whatsapp.com (DNS) — …"); null otherwise.
   */
  detail: string | null
  expiresAt: string | null
  /** When WhatsApp was last known connected (ready, or a liveness probe answered); null if never. */
  lastSeenAlive: string | null
  /** In a cluster, the node that runs (or ran) the session; null outside one or when unknown. */
  node: string | null
  history: HistoryEntryJson[]
  /** Only while a session that links with a phone number shows a code. */
  pairingCode?: PairingCodeJson
}

export interface PairingCodeJson {
  code: string
  expiresAt: string
}

/** The pairing code a view shows, as the API writes it; null when none is shown. */
export function pairingCodeJson(view: CampaignView): PairingCodeJson | null {
  if (view.pairingCode === null) return null
  return { code: view.pairingCode.code, expiresAt: isoTime(view.pairingCode.expiresAt) }
}

/**
 * Recently formatted times. A status answer formats the same few stable times (history entries,
 * deadlines) on every poll, and `Date#toISOString` is most of what shaping the answer costs
 * (~1 µs each; measured in docs/benchmarks/http.md).
 */
const isoCache = new Map<number, string>()
const ISO_CACHE_SIZE = 4096

/** An epoch-ms time as an ISO string; null stays null. */
export function isoTime(epochMs: number): string
export function isoTime(epochMs: number | null): string | null
export function isoTime(epochMs: number | null): string | null {
  if (epochMs === null) return null
  let iso = isoCache.get(epochMs)
  if (iso === undefined) {
    iso = new Date(epochMs).toISOString()
    if (isoCache.size >= ISO_CACHE_SIZE) isoCache.clear()
    isoCache.set(epochMs, iso)
  }
  return iso
}

/** The `GET …/connection` answer for a campaign. */
export function connectionJson(view: CampaignView): ConnectionJson {
  const pairingCode = pairingCodeJson(view)
  const json: ConnectionJson = {
    campaignId: view.campaignId,
    isConnected: view.isConnected,
    lastActivity: isoTime(view.lastActivity),
    hasActiveSession: view.hasActiveSession,
    sessionId: view.sessionId,
    status: view.status,
    reason: view.reason,
    detail: view.hasActiveSession ? null : endDetail(view.history),
    expiresAt: isoTime(view.expiresAt),
    lastSeenAlive: isoTime(view.lastSeenAlive),
    node: view.node,
    history: view.history.map(historyEntryJson),
  }
  if (pairingCode) json.pairingCode = pairingCode
  return json
}

/** The detail recorded when the session ended (on its `timedOut`/`failed` step and after). */
function endDetail(history: HistoryEntry[]): string | null {
  for (let i = history.length - 1; i >= 0; i--) {
    const detail = history[i]!.detail
    if (detail !== undefined) return detail
  }
  return null
}

function historyEntryJson(entry: HistoryEntry): HistoryEntryJson {
  const json: HistoryEntryJson = { status: entry.status, at: isoTime(entry.at) }
  if (entry.reason !== undefined) json.reason = entry.reason
  if (entry.detail !== undefined) json.detail = entry.detail
  return json
}
