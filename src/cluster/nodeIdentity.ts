/**
 * One process per `NODE_ID`. The leases name nodes, not processes: two processes started with one
 * `NODE_ID` (a copied configuration) would both take the same leases as their own and could run
 * one campaign twice. So each process beats as an instance of its own (a random token in the
 * node's heartbeat row), and a heartbeat is refused while another instance of the name was heard
 * from within `LEASE_TTL_MS`:
 * - at start (`join`), the other instance is either this node's previous process (killed: it falls
 *   silent, and its leases expire, within the TTL), waited for, or a second live node, refused;
 * - later (`heartbeat`), a refusal means another process took the name while this one was silent
 *   (paused past the TTL): this one must give way.
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import type { Logger } from '../logger.ts'
import type { LeaseTable, NodeHeartbeat } from './leaseTable.ts'

/** A heartbeat refused: another live process holds this node's `NODE_ID`. */
export class NodeIdInUseError extends Error {
  constructor(
    nodeId: string,
    readonly silentForMs: number
  ) {
    super(
      `NODE_ID ${nodeId} is in use by another live node (its last heartbeat ${Math.round(silentForMs)} ms ago): every node needs its own NODE_ID`
    )
    this.name = 'NodeIdInUseError'
  }
}

export interface NodeIdentityOptions {
  table: Pick<LeaseTable, 'heartbeat'>
  /** How long an instance stays the name's after its last heartbeat (`LEASE_TTL_MS`). */
  ttlMs: number
  /** How long `join` waits for another instance to fall silent before refusing. */
  joinWaitMs: number
  logger: Logger
}

export interface NodeIdentity {
  /** This process's token. */
  readonly instance: string
  /** Beats as this instance; rejects with `NodeIdInUseError` while another one holds the name. */
  heartbeat(beat: NodeHeartbeat): Promise<void>
  /**
   * The first heartbeat: waits (up to `joinWaitMs`) while another instance of the name was heard
   * from within the TTL; rejects with `NodeIdInUseError` if it is still heard from then.
   */
  join(beat: () => NodeHeartbeat): Promise<void>
}

export function nodeIdentity({
  table,
  ttlMs,
  joinWaitMs,
  logger,
}: NodeIdentityOptions): NodeIdentity {
  const instance = randomUUID()

  async function heartbeat(beat: NodeHeartbeat): Promise<void> {
    const inUse = await table.heartbeat(beat, instance, ttlMs)
    if (inUse) throw new NodeIdInUseError(beat.nodeId, inUse.silentForMs)
  }

  return {
    instance,
    heartbeat,
    async join(beat) {
      const deadline = Date.now() + joinWaitMs
      let told = false
      for (;;) {
        try {
          await heartbeat(beat())
          return
        } catch (error) {
          if (!(error instanceof NodeIdInUseError) || Date.now() >= deadline) throw error
          if (!told) {
            told = true
            logger.warn(
              { node: beat().nodeId, silentForMs: error.silentForMs, waitMs: joinWaitMs },
              'another process with this NODE_ID was heard from recently: waiting for it to fall silent (a restart after a crash); if it goes on beating, this one is refused'
            )
          }
          await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, ttlMs / 4)))
        }
      }
    },
  }
}
