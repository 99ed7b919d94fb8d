/**
 * The actor systems the campaign actors live in. Each campaign actor is created with a small
 * *shard* actor as its parent, only to share that shard's system; a shard takes `SHARD_SIZE`
 * sessions and is stopped once they have all ended.
 *
 * Why shards: one shared actor system costs O(N²) to tear down, since stopping an actor scans
 * every scheduled event of its system (`scheduler.cancelAll`; measured: 10k sessions took 3.1 s
 * to shut down, 1k took 72 ms), and a system per session costs ~2 KiB of heap each. With shards,
 * teardown scans at most one shard's timers.
 *
 * @module
 */
import type { AnyActorRef, InspectionEvent, Observer, Subscription as XSubscription } from 'xstate'
import { createActor, createMachine } from 'xstate'
import type { Clock } from '../clock.ts'

/** Sessions per shard: bounds what stopping one actor scans, and amortises a system's heap. */
export const SHARD_SIZE = 256

/**
 * A shard is the parent of its campaign actors only so that they share its actor system. It
 * absorbs what children report to a parent (their ends are observed directly): with `'*'`
 * handled, a child's error never escalates into the shard.
 */
const shardMachine = createMachine({ id: 'shard', on: { '*': {} } })

export interface Shard {
  actor: AnyActorRef
  /** Sessions ever placed in it, and those still live. */
  placed: number
  live: number
  inspection: XSubscription | undefined
}

export interface ShardsOptions {
  /** The clock of every campaign actor's timers. */
  clock: Clock
  /** Told when an inspection observer throws (the others still get the event). */
  onObserverError?: (error: unknown) => void
}

export class Shards {
  private readonly shards = new Set<Shard>()
  private readonly inspectors = new Set<Observer<InspectionEvent>>()
  /** The shard that takes new sessions. */
  private open: Shard | undefined

  constructor(private readonly options: ShardsOptions) {}

  /** Shards not yet stopped. */
  get count(): number {
    return this.shards.size
  }

  /** The shard a new session goes in (a new one when the open one is full). */
  place(): Shard {
    if (!this.open || this.open.placed >= SHARD_SIZE) {
      const actor = createActor(shardMachine, { clock: this.options.clock })
      actor.start()
      const shard: Shard = { actor, placed: 0, live: 0, inspection: undefined }
      if (this.inspectors.size > 0) shard.inspection = actor.system.inspect(this.inspectionHub)
      this.shards.add(shard)
      this.open = shard
    }
    this.open.placed++
    this.open.live++
    return this.open
  }

  /** One of the shard's sessions ended. A full shard whose sessions have all ended is stopped. */
  release(shard: Shard): void {
    shard.live--
    if (shard.live > 0 || shard === this.open) return
    this.shards.delete(shard)
    stopShardLater(shard)
  }

  /** Stops every shard (at shutdown, once every session has ended). */
  close(): void {
    for (const shard of this.shards) stopShardLater(shard)
    this.shards.clear()
    this.open = undefined
  }

  /**
   * Attaches an inspection observer to every shard's system, present and future, while it is
   * attached; with no observer, inspection costs nothing.
   */
  inspect(observer: Observer<InspectionEvent>): XSubscription {
    if (this.inspectors.size === 0) {
      for (const shard of this.shards)
        shard.inspection = shard.actor.system.inspect(this.inspectionHub)
    }
    this.inspectors.add(observer)
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

  private readonly inspectionHub: Observer<InspectionEvent> = {
    next: (event) => {
      // A shard only lends its actor system (it hears its children end): not an actor to show.
      if ((event.actorRef as { logic?: unknown }).logic === shardMachine) return
      for (const inspector of this.inspectors) {
        try {
          inspector.next?.(event)
        } catch (error) {
          this.options.onObserverError?.(error)
        }
      }
    },
  }
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
