/**
 * The one shape the API shows of a campaign (`CampaignView`), built from its live session's
 * snapshot, from what another node told of the session it runs, or from the tombstone of its last
 * ended session.
 *
 * @module
 */
import type { SnapshotFrom } from 'xstate'
import type { CampaignView } from './api.ts'
import { statusOf, type CampaignMachine } from './campaignMachine.ts'
import type { RemoteSession } from './remoteSessions.ts'
import type { Tombstone } from './tombstones.ts'

/** What a view shows of the campaign itself, whichever session it shows. */
export interface CampaignFacts {
  campaignId: string
  owner: string | null
  lastActivity: number | null
}

/** The campaign as a live session of it, run by this node (`node`: null outside a cluster), stands. */
export function liveView(
  campaign: CampaignFacts,
  sessionId: string,
  snapshot: SnapshotFrom<CampaignMachine>,
  node: string | null
): CampaignView {
  const { context } = snapshot
  const status = statusOf(snapshot.value)
  return {
    ...campaign,
    sessionId,
    status,
    reason: context.reason,
    isConnected: status === 'ready',
    hasActiveSession: snapshot.hasTag('active'),
    expiresAt: context.phaseDeadline,
    lastSeenAlive: context.lastSeenAliveAt,
    history: context.history,
    qr: status === 'awaitingScan' ? context.qr : null,
    pairingCode: status === 'awaitingScan' ? context.pairingCode : null,
    node,
  }
}

/** The campaign as a session of it that runs on another node stands, as that node told it. */
export function remoteView(campaign: CampaignFacts, remote: RemoteSession): CampaignView {
  return {
    ...campaign,
    sessionId: remote.sessionId,
    status: remote.status,
    reason: remote.reason,
    isConnected: remote.isConnected,
    hasActiveSession: remote.hasActiveSession,
    expiresAt: remote.expiresAt,
    lastSeenAlive: remote.lastSeenAlive,
    history: remote.history,
    qr: remote.qr,
    pairingCode: remote.pairingCode,
    node: remote.node,
  }
}

/** The campaign as an ended session left it (`idle` with no session when there is none). */
export function endedView(campaign: CampaignFacts, last: Tombstone | undefined): CampaignView {
  return {
    ...campaign,
    sessionId: last?.sessionId ?? null,
    status: last?.status ?? 'idle',
    reason: last?.reason ?? null,
    isConnected: false,
    hasActiveSession: false,
    expiresAt: null,
    lastSeenAlive: last?.lastSeenAlive ?? null,
    history: last?.history ?? [],
    qr: null,
    pairingCode: null,
    node: last?.node ?? null,
  }
}
