/**
 * Drain: a node told to stop (SIGTERM) hands its linked campaigns over before it exits, so a
 * rolling restart keeps every linked campaign linked.
 *
 * The node already takes no new sessions (its heartbeat says `draining`; a start asked of it is
 * placed on another node). Its linked campaigns go a batch at a time: each session is stopped
 * here, its lease released as a handover (the engine is gone: the next owner starts at once),
 * the other nodes are told, and the next batch waits until the batch is ready elsewhere (or a
 * bound passes), so the others' launches are paced. Sessions still waiting for a scan stay: the
 * person is looking at their QR; they end with the shutdown.
 *
 * Without another live node there is nobody to hand over to: the campaigns' leases are released
 * as handovers by the shutdown, and whoever starts next (this node again, or another) restores
 * them.
 *
 * @module
 */
import type { Logger } from '../logger.ts'
import { sessionTag } from '../sessionTag.ts'
import type { ClusterSessions } from './clusterSessions.ts'
import type { ClusterEvents } from './clusterEvents.ts'
import type { LeasedEngine } from './leasedEngine.ts'

export interface DrainOptions {
  sessions: Pick<ClusterSessions, 'getCampaign' | 'shouldRun' | 'handOver'>
  engine: Pick<LeasedEngine, 'runningCampaigns' | 'releases'>
  events: Pick<ClusterEvents, 'settled' | 'announceHandover'>
  /** Live nodes that take sessions, this one excluded. */
  otherNodes(): Promise<number>
  /** Campaigns handed over at once. */
  batch: number
  /** How long a batch may take to be ready elsewhere before the next goes anyway. */
  waitMs: number
  /** The whole drain's bound (`DRAIN_TIMEOUT_MS`): past it, the rest ends with the shutdown. */
  totalMs: number
  nodeId: string
  logger: Logger
}

const POLL_MS = 100

export async function drainNode(options: DrainOptions): Promise<void> {
  const { sessions, engine, events, nodeId, logger } = options
  if ((await options.otherNodes()) === 0) {
    logger.info('draining: no other node takes sessions; linked campaigns wait for the next start')
    return
  }
  const linked = engine.runningCampaigns().filter((campaignId) => {
    const view = sessions.getCampaign(campaignId)
    return view.status === 'ready' && sessions.shouldRun(campaignId)
  })
  logger.info({ campaigns: linked.length }, 'draining: handing linked campaigns over')
  const endOfDrain = Date.now() + options.totalMs
  for (let start = 0; start < linked.length && Date.now() < endOfDrain; start += options.batch) {
    const batch = linked.slice(start, start + options.batch)
    await Promise.all(batch.map((campaignId) => sessions.handOver(campaignId)))
    // Their leases released as handovers (after their last records were written), then the others are told.
    await engine.releases()
    await events.settled()
    events.announceHandover()
    const deadline = Math.min(Date.now() + options.waitMs, endOfDrain)
    let waiting = batch
    while (waiting.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS))
      waiting = waiting.filter((campaignId) => {
        const view = sessions.getCampaign(campaignId)
        return !(view.status === 'ready' && view.node !== null && view.node !== nodeId)
      })
    }
    if (waiting.length > 0) {
      logger.warn(
        {
          campaigns: waiting.slice(0, 20).map((campaignId) => {
            const { status, node, sessionId } = sessions.getCampaign(campaignId)
            return { campaignId, status, node, session: sessionTag(sessionId) }
          }),
          waiting: waiting.length,
        },
        'draining: not seen ready on another node in time; going on'
      )
    }
  }
  logger.info({ campaigns: linked.length }, 'draining: handed over')
}
