/**
 * An engine that runs a campaign only under its lease: the cluster's guarantee that two browsers
 * never run one WhatsApp login at once, as an `Engine` decorator, so the session core is the
 * same on one node or many.
 *
 * - `start()` first takes the campaign's lease (or proves this node holds it). Held by another
 *   node: the session fails to start, saying which node runs it. Taken over from a node that
 *   died: the launch waits `killBound + margin` (that node, if only paused, kills its browser
 *   meanwhile).
 * - Events of an engine whose lease this node cannot prove are dropped, before the keeper's
 *   timer has even run (after a pause an engine's event may come first).
 * - A lease lost or fenced (`fence`): the engine is killed at once (the forced phase only) and
 *   the session hears `terminated` with the kind `lease_lost` (its reason: `node_lost`).
 * - Once the last engine of a campaign here is gone, the lease is released (with `handover`
 *   when the campaign should keep running elsewhere: a drain, a graceful shutdown).
 *
 * @module
 */
import { delay, type Clock } from '../clock.ts'
import type { Engine, EngineEvent, EngineSession, EngineSessionOptions } from '../engines/engine.ts'
import type { Logger } from '../logger.ts'
import type { CampaignLeases } from './campaignLeases.ts'

export interface LeasedEngineOptions {
  leases: CampaignLeases
  /** Timers of the takeover wait (the monotonic clock). */
  clock: Clock
  logger: Logger
  /** Asked when the lease is released: should the campaign keep running on another node? */
  handsOver(campaignId: string): boolean
  /**
   * Runs before a lease is released, once the session has recorded its end: the store writes
   * what is queued, so the session's last record goes in under this lease (the next owner's
   * epoch would refuse it).
   */
  beforeRelease?: () => Promise<void>
}

export interface LeasedEngine extends Engine {
  /** Kills the engines of campaigns whose lease was lost; their sessions end `node_lost`. */
  fence(campaignIds: readonly string[], why: 'fenced' | 'lost'): void
  /** The OS processes of the campaign's engines here (a wwebjs browser), for the watchdog. */
  pidsOf(campaignId: string): number[]
  /** Resolves once the lease releases under way now are done (a drain announces after them). */
  releases(): Promise<void>
  /** Engine sessions running here per campaign (tests, readiness). */
  runningCampaigns(): string[]
  /**
   * Releases the leases held with no engine here for two calls in a row (a start that was
   * refused or joined after its lease was taken); called every renewal interval.
   */
  releaseIdle(): void
}

interface Leased {
  campaignId: string
  inner: EngineSession | undefined
  stopped: boolean
  fenced: boolean
  emit(event: EngineEvent): void
}

export function leasedEngine(inner: Engine, options: LeasedEngineOptions): LeasedEngine {
  const { leases, clock, logger } = options
  /** Sessions per campaign that hold (or are taking) its lease here. */
  const byCampaign = new Map<string, Set<Leased>>()
  /** Lease releases under way. */
  const releasing = new Set<Promise<void>>()
  /** Leases held with no engine here at the last `releaseIdle`. */
  let idle = new Set<string>()

  function track(session: Leased): void {
    let sessions = byCampaign.get(session.campaignId)
    if (!sessions) byCampaign.set(session.campaignId, (sessions = new Set()))
    sessions.add(session)
  }

  /** Forgets the session; the last of its campaign here releases the lease. */
  function untrack(session: Leased): void {
    const sessions = byCampaign.get(session.campaignId)
    if (!sessions?.delete(session) || sessions.size > 0) return
    byCampaign.delete(session.campaignId)
    if (session.fenced) return
    const { campaignId } = session
    const handover = options.handsOver(campaignId)
    // The session hears its engine is gone after this stop resolves, and records its end then:
    // in the next turn, that record is queued.
    const release = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => options.beforeRelease?.())
      .catch((error: unknown) =>
        logger.warn({ err: error, campaignId }, 'the store did not write before a lease release')
      )
      .then(() => {
        // Taken again meanwhile (a new session of the campaign here): not this release's.
        if (byCampaign.has(campaignId)) return
        return leases.release(campaignId, { handover })
      })
      .catch((error: unknown) => {
        // It expires on its own: the next owner waits the takeover delay instead.
        logger.warn({ err: error, campaignId }, 'a lease could not be released')
      })
      .finally(() => releasing.delete(release))
    releasing.add(release)
  }

  async function launch(session: Leased, sessionOptions: EngineSessionOptions): Promise<void> {
    const { campaignId } = session
    let lease
    try {
      lease = await leases.ensure(campaignId)
    } catch (error) {
      session.emit({
        type: 'terminated',
        kind: 'start_failed',
        detail: `the cluster's database did not grant the campaign's lease: ${error instanceof Error ? error.message : String(error)}`,
      })
      return
    }
    if (!lease.ok) {
      session.emit({
        type: 'terminated',
        kind: 'start_failed',
        detail: `the campaign's session runs on node ${lease.heldBy.nodeId}`,
      })
      return
    }
    if (lease.waitMs > 0) {
      logger.info(
        { campaignId, waitMs: Math.round(lease.waitMs) },
        'took over an expired lease: waiting for the old owner to have killed its browser'
      )
      await delay(clock, lease.waitMs)
    }
    if (session.stopped || session.fenced) return
    if (!leases.isProvable(campaignId)) {
      session.emit({
        type: 'terminated',
        kind: 'lease_lost',
        detail: 'the lease was lost before the engine launched',
      })
      return
    }
    leases.launched(campaignId)
    session.inner = inner.createSession({
      ...sessionOptions,
      ...(lease.takeover ? { takeover: true } : {}),
      onEvent: (event) => {
        // Not provable: lost, whatever the keeper has noticed yet; nothing of it goes out.
        if (!session.fenced && leases.isProvable(campaignId)) session.emit(event)
      },
    })
    session.inner.start()
  }

  return {
    name: inner.name,
    createSession(sessionOptions) {
      let emitted = false
      const session: Leased = {
        campaignId: sessionOptions.campaignId,
        inner: undefined,
        stopped: false,
        fenced: false,
        emit(event) {
          if (session.stopped || emitted) return
          if (event.type === 'terminated') emitted = true
          sessionOptions.onEvent(event)
        },
      }
      let stopping:
        Promise<{ forced: boolean; durationMs: number; loggedOut?: boolean }> | undefined
      return {
        start() {
          track(session)
          void launch(session, sessionOptions)
            .catch((error: unknown) =>
              session.emit({
                type: 'terminated',
                kind: 'engine_error',
                detail: `the engine could not be launched: ${String(error)}`,
              })
            )
            .finally(() => {
              if (!session.inner) untrack(session)
            })
        },
        stop(stopOptions) {
          stopping ??= (async () => {
            session.stopped = true
            const result = session.inner
              ? await session.inner.stop(stopOptions)
              : { forced: false, durationMs: 0 }
            untrack(session)
            return result
          })()
          return stopping
        },
        probe() {
          return session.inner
            ? session.inner.probe()
            : Promise.reject(new Error('the engine has not launched'))
        },
      }
    },
    forgetLogin: inner.forgetLogin?.bind(inner),
    close: () => inner.close(),
    fence(campaignIds, why) {
      for (const campaignId of campaignIds) {
        for (const session of byCampaign.get(campaignId) ?? []) {
          if (session.fenced) continue
          session.fenced = true
          logger.warn({ campaignId, why }, 'lease lost: killing the engine (fencing)')
          const killed = session.inner
            ? session.inner.stop({ force: true })
            : Promise.resolve({ forced: true, durationMs: 0 })
          void killed.then(() => {
            session.emit({
              type: 'terminated',
              kind: 'lease_lost',
              detail:
                why === 'fenced'
                  ? 'this node could not renew the lease in time and killed the engine'
                  : 'this node lost the lease to another node and killed the engine',
            })
          })
        }
      }
    },
    runningCampaigns: () => [...byCampaign.keys()],
    releases: () => Promise.all([...releasing]).then(() => undefined),
    pidsOf: (campaignId) =>
      [...(byCampaign.get(campaignId) ?? [])].flatMap((session) => session.inner?.pids?.() ?? []),
    releaseIdle() {
      const idleNow = new Set<string>()
      for (const campaignId of leases.heldCampaigns()) {
        if (byCampaign.has(campaignId)) continue
        if (idle.has(campaignId)) {
          leases.release(campaignId).catch(() => undefined)
        } else idleNow.add(campaignId)
      }
      idle = idleNow
    },
  }
}
