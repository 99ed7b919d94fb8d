/**
 * What the cluster needs of the session service: the durable service as `src/server.ts` builds
 * it, seen through the session API's types (the cluster is not part of the core).
 *
 * @module
 */
import type {
  CampaignView,
  CleanupResult,
  RemoteSessionEvent,
  SessionEvent,
  SessionStats,
  StartRequest,
  StartResult,
  Subscription,
} from '../session/api.ts'
import type { CampaignRecord } from '../store/index.ts'

export interface ClusterSessions {
  requestSession(request: StartRequest): Promise<StartResult>
  getCampaign(campaignId: string): CampaignView
  stats(): SessionStats
  /** Every event of this node's own sessions (never a remote one). */
  observe(listener: (event: SessionEvent) => void): Subscription
  /** Shows a session of another node; returns the event as told here (undefined: ignored). */
  applyRemote(remote: RemoteSessionEvent): SessionEvent | undefined
  /** Reads the campaign from the store and takes it as it is there (before running it here). */
  reload(
    campaignId: string
  ): Promise<Pick<CampaignRecord, 'owner' | 'wanted' | 'linked' | 'lastSession'> | undefined>
  /** Linked and wanted `running`. */
  shouldRun(campaignId: string): boolean
  /** Stops the campaign's session here without changing what it wants (a drain). */
  handOver(campaignId: string): Promise<CleanupResult>
}
