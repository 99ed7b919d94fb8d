/**
 * The simulated engine: an in-process stand-in for whatsapp-web.js that behaves like the real
 * one, for the demo, the tests and load tests. It plays WhatsApp's part (QRs every 20 s, the
 * link remembered as saved auth would be) and lets the caller play the phone's part (scan,
 * disconnect, crash) and pick how a campaign's next session starts and tears down.
 *
 * All waiting goes through the injected clock, so tests run it in simulated time.
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import type {
  Engine,
  EngineEvent,
  EngineSession,
  EngineSessionOptions,
  EngineStopResult,
} from './engine.ts'

export type StartupBehaviour = 'qr' | 'hang' | 'error' | 'restored'
export type TeardownBehaviour = 'normal' | 'hang'

export interface SimulatedBehaviour {
  startup: StartupBehaviour
  teardown: TeardownBehaviour
}

export interface SimulatedEngineOptions {
  clock?: Clock
  /** Start until the first QR (WhatsApp's page load). */
  qrDelayMs?: number
  /** Interval between QR rotations. */
  qrRotateMs?: number
  /** Scan until ready (WhatsApp's history sync). */
  authDelayMs?: number
  /** How long a normal graceful teardown takes. */
  destroyDelayMs?: number
  /** Graceful teardown bound, after which the session is killed. */
  destroyTimeoutMs?: number
  /** How long the kill takes (always below killTimeoutMs). */
  killDelayMs?: number
  killTimeoutMs?: number
  /**
   * Campaigns whose behaviour or link is remembered, at most (10,000). Past it, the older half
   * is forgotten: their next sessions behave by default and are not linked.
   */
  maxRememberedCampaigns?: number
}

export interface SimulatedEngine extends Engine {
  /** The phone scans the current QR. False when no QR is shown. */
  scan(campaignId: string): boolean
  /** The phone logs the device out. False when no session of the campaign is running. */
  disconnect(campaignId: string): boolean
  /** The engine dies without warning. False when no session of the campaign is running. */
  crash(campaignId: string): boolean
  /** What the campaign's next sessions do (until changed). */
  setBehaviour(campaignId: string, behaviour: Partial<SimulatedBehaviour>): SimulatedBehaviour
  behaviourOf(campaignId: string): SimulatedBehaviour
  isLinked(campaignId: string): boolean
  /** Running engine instances (started and not yet fully stopped). */
  liveCount(): number
  /** Running engine instances of one campaign. */
  liveCountOf(campaignId: string): number
  /** Campaigns with a behaviour or a link remembered (bounded by `maxRememberedCampaigns`). */
  rememberedCount(): number
  /** Counts since the engine was created, to prove nothing leaks. */
  counters(): { started: number; stopped: number; forcedStops: number }
}

const DEFAULT_BEHAVIOUR: SimulatedBehaviour = { startup: 'qr', teardown: 'normal' }

/** What the simulator remembers of a campaign beyond its sessions. */
interface CampaignMemory {
  behaviour: SimulatedBehaviour
  /** Linked, as saved auth would be: its next session starts without a QR. */
  linked: boolean
}

/** A QR payload shaped like WhatsApp Web's: ref, noise key, identity key, adv secret, platform. */
export function fakeWhatsAppQr(): string {
  // One call for all 162 random bytes: at 100k sessions, four calls per QR showed in profiles.
  const bytes = randomBytes(66 + 3 * 32)
  const field = (start: number, length: number) =>
    bytes.subarray(start, start + length).toString('base64')
  return `2@${field(0, 66)},${field(66, 32)},${field(98, 32)},${field(130, 32)},1`
}

export function createSimulatedEngine(options: SimulatedEngineOptions = {}): SimulatedEngine {
  const {
    clock = systemClock,
    qrDelayMs = 300,
    qrRotateMs = 20_000,
    authDelayMs = 500,
    destroyDelayMs = 20,
    destroyTimeoutMs = 10_000,
    killDelayMs = 10,
    killTimeoutMs = 5_000,
    maxRememberedCampaigns = 10_000,
  } = options
  /**
   * Only campaigns with something to remember (a behaviour that is not the default, a link),
   * oldest change first. Anyone may set a behaviour, for any campaign: this bounds what that keeps.
   */
  const memory = new Map<string, CampaignMemory>()
  /** The newest running instance of each campaign: the one the phone talks to. */
  const current = new Map<string, SimulatedSession>()
  const live = new Set<SimulatedSession>()
  const counts = { started: 0, stopped: 0, forcedStops: 0 }

  class SimulatedSession implements EngineSession {
    private timer: TimerHandle | undefined
    private showingQr = false
    private terminated = false
    private stopping: Promise<EngineStopResult> | undefined
    private readonly behaviour: SimulatedBehaviour

    constructor(private readonly options: EngineSessionOptions) {
      this.behaviour = behaviourOf(options.campaignId)
    }

    get campaignId(): string {
      return this.options.campaignId
    }

    start(): void {
      counts.started++
      live.add(this)
      current.set(this.options.campaignId, this)
      const { startup } = this.behaviour
      if (startup === 'hang') return
      if (startup === 'error') {
        this.schedule(qrDelayMs, () => this.terminate('start_failed', 'simulated start failure'))
      } else if (startup === 'restored' || isLinked(this.options.campaignId)) {
        this.schedule(qrDelayMs, () => {
          this.deliver({ type: 'authenticated' })
          this.schedule(authDelayMs, () => this.deliver({ type: 'ready' }))
        })
      } else {
        this.schedule(qrDelayMs, () => this.showQr())
      }
    }

    scan(): boolean {
      if (!this.showingQr || this.isDead()) return false
      this.showingQr = false
      this.deliver({ type: 'authenticated' })
      this.schedule(authDelayMs, () => {
        remember(this.options.campaignId, { linked: true })
        this.deliver({ type: 'ready' })
      })
      return true
    }

    terminate(kind: 'start_failed' | 'logged_out' | 'crashed', detail: string): boolean {
      if (this.isDead()) return false
      if (kind === 'logged_out') remember(this.options.campaignId, { linked: false })
      this.deliver({ type: 'terminated', kind, detail })
      this.terminated = true
      this.showingQr = false
      this.cancelTimer()
      return true
    }

    stop(): Promise<EngineStopResult> {
      this.stopping ??= this.runStop()
      return this.stopping
    }

    private async runStop(): Promise<EngineStopResult> {
      const startedAt = clock.now()
      this.cancelTimer()
      this.showingQr = false
      const gracefulMs = this.behaviour.teardown === 'hang' ? Infinity : destroyDelayMs
      const forced = gracefulMs > destroyTimeoutMs
      await wait(forced ? destroyTimeoutMs + Math.min(killDelayMs, killTimeoutMs) : gracefulMs)
      live.delete(this)
      if (current.get(this.options.campaignId) === this) current.delete(this.options.campaignId)
      counts.stopped++
      if (forced) counts.forcedStops++
      return { forced, durationMs: clock.now() - startedAt }
    }

    private showQr(): void {
      this.showingQr = true
      this.deliver({ type: 'qr', qr: fakeWhatsAppQr() })
      this.schedule(qrRotateMs, () => this.showQr())
    }

    private isDead(): boolean {
      return this.terminated || this.stopping !== undefined
    }

    private deliver(event: EngineEvent): void {
      if (this.isDead()) return
      this.options.onEvent(event)
    }

    private schedule(ms: number, fn: () => void): void {
      this.cancelTimer()
      this.timer = clock.setTimeout(() => {
        this.timer = undefined
        if (!this.isDead()) fn()
      }, ms)
    }

    private cancelTimer(): void {
      if (this.timer !== undefined) clock.clearTimeout(this.timer)
      this.timer = undefined
    }
  }

  function wait(ms: number): Promise<void> {
    return new Promise((resolve) => clock.setTimeout(resolve, ms))
  }

  function behaviourOf(campaignId: string): SimulatedBehaviour {
    return memory.get(campaignId)?.behaviour ?? DEFAULT_BEHAVIOUR
  }

  function isLinked(campaignId: string): boolean {
    return memory.get(campaignId)?.linked ?? false
  }

  /** Changes what is remembered of a campaign; it becomes the newest, or is dropped if default. */
  function remember(campaignId: string, change: Partial<CampaignMemory>): CampaignMemory {
    const next = { behaviour: behaviourOf(campaignId), linked: isLinked(campaignId), ...change }
    memory.delete(campaignId)
    const isDefault =
      !next.linked &&
      next.behaviour.startup === DEFAULT_BEHAVIOUR.startup &&
      next.behaviour.teardown === DEFAULT_BEHAVIOUR.teardown
    if (!isDefault) {
      memory.set(campaignId, next)
      if (memory.size > maxRememberedCampaigns) forgetOlderHalf()
    }
    return next
  }

  /**
   * One walk from the oldest: deleting one entry at a time from the head of a Map walks every
   * entry deleted before it (V8 compacts only when it rehashes), ~10 µs each at 10,000.
   */
  function forgetOlderHalf(): void {
    let excess = memory.size - Math.floor(maxRememberedCampaigns / 2)
    for (const campaignId of memory.keys()) {
      if (excess-- <= 0) break
      memory.delete(campaignId)
    }
  }

  function running(campaignId: string): SimulatedSession | undefined {
    return current.get(campaignId)
  }

  return {
    name: 'simulated',
    createSession: (sessionOptions) => new SimulatedSession(sessionOptions),
    scan: (campaignId) => running(campaignId)?.scan() ?? false,
    disconnect: (campaignId) =>
      running(campaignId)?.terminate('logged_out', 'the phone logged the device out') ?? false,
    crash: (campaignId) =>
      running(campaignId)?.terminate('crashed', 'simulated crash: the browser is gone') ?? false,
    setBehaviour: (campaignId, behaviour) =>
      remember(campaignId, { behaviour: { ...behaviourOf(campaignId), ...behaviour } }).behaviour,
    behaviourOf,
    isLinked,
    rememberedCount: () => memory.size,
    liveCount: () => live.size,
    liveCountOf(campaignId) {
      let count = 0
      for (const session of live) if (session.campaignId === campaignId) count++
      return count
    },
    counters: () => ({ ...counts }),
    async close() {
      await Promise.all([...live].map((session) => session.stop()))
    },
  }
}
