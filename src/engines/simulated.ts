/**
 * The simulated engine: an in-process stand-in for whatsapp-web.js that behaves like the real
 * one, for the demo, the tests and load tests. It plays WhatsApp's part (QRs every 20 s, the
 * link saved as a login, under DATA_DIR when given: ./simulatedLogins.ts) and lets the caller play
 * the phone's part (scan, disconnect, crash) and pick how a campaign's next session starts and
 * tears down.
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
  EngineStopOptions,
  EngineStopResult,
  EngineTerminationKind,
} from './engine.ts'
import { simulatedLedger, type LedgerStopKind } from './simulatedLedger.ts'
import { simulatedLoginFiles, type SimulatedLogins } from './simulatedLogins.ts'
import { viewOfProxy, type ProxySettings, type ProxyView } from '../proxy.ts'

export type StartupBehaviour = 'qr' | 'hang' | 'error' | 'restored'
export type TeardownBehaviour = 'normal' | 'hang'
/**
 * What the liveness probe finds: `healthy` answers CONNECTED, `hang` never answers (a frozen
 * page), `disconnected` answers TIMEOUT (the page's socket to WhatsApp is gone, no event said so).
 */
export type LivenessBehaviour = 'healthy' | 'hang' | 'disconnected'

export interface SimulatedBehaviour {
  startup: StartupBehaviour
  teardown: TeardownBehaviour
  /** Read at each probe: it applies to the running session too, at once. */
  liveness: LivenessBehaviour
}

export interface SimulatedEngineOptions {
  clock?: Clock
  /**
   * The service's DATA_DIR: each linked campaign's login is saved in
   * `<dataDir>/simulated/<campaignId>.json` and survives a restart. Without it, links are kept in
   * memory only (bounded by `maxRememberedCampaigns`).
   */
  dataDir?: string
  /** Start until the first QR (WhatsApp's page load). */
  qrDelayMs?: number
  /** Interval between QR rotations. */
  qrRotateMs?: number
  /** Interval between pairing code renewals (WhatsApp Web's: 180 s). */
  pairingCodeRenewMs?: number
  /** The proxy of sessions that bring none (`WA_PROXY`). */
  defaultProxy?: ProxySettings
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
   * Campaigns whose behaviour or (without `dataDir`) link is remembered, at most (10,000). Past
   * it, the older half is forgotten: their next sessions behave by default and are not linked.
   */
  maxRememberedCampaigns?: number
  /**
   * A test aid (`SIM_LEDGER=true`): each session appends a line to
   * `<dataDir>/simulated/ledger/<campaignId>.jsonl` when it starts and when it is gone
   * (./simulatedLedger.ts). Needs `dataDir`.
   */
  ledger?: boolean
  /** The node named in the ledger's lines (default: `NODE_ID`, else the process id). */
  nodeId?: string
}

export interface SimulatedEngine extends Engine {
  /** Deletes the campaign's saved login (see `Engine.forgetLogin`). */
  forgetLogin(campaignId: string): Promise<void>
  /** The phone scans the current QR. False when no QR is shown. */
  scan(campaignId: string): boolean
  /**
   * The person types a pairing code on the phone. False when the campaign shows no pairing code,
   * or another one (WhatsApp refuses it; the session keeps waiting).
   */
  enterPairingCode(campaignId: string, code: string): boolean
  /** The phone logs the device out. False when no session of the campaign is running. */
  disconnect(campaignId: string): boolean
  /** The engine dies without warning. False when no session of the campaign is running. */
  crash(campaignId: string): boolean
  /** What the campaign's next sessions do (until changed). */
  setBehaviour(campaignId: string, behaviour: Partial<SimulatedBehaviour>): SimulatedBehaviour
  behaviourOf(campaignId: string): SimulatedBehaviour
  isLinked(campaignId: string): boolean
  /**
   * The proxy the campaign's running session goes through (a simulated session uses none, but says
   * which it was given), without its credentials; null when it has none or none runs.
   */
  proxyInUse(campaignId: string): ProxyView | null
  /** Running engine instances (started and not yet fully stopped). */
  liveCount(): number
  /** Running engine instances of one campaign. */
  liveCountOf(campaignId: string): number
  /**
   * Campaigns with a behaviour or (without `dataDir`) a link remembered in memory (bounded by
   * `maxRememberedCampaigns`). Saved logins under `dataDir` are not counted: they are the disk's.
   */
  rememberedCount(): number
  /** Counts since the engine was created, to prove nothing leaks (and when probes came). */
  counters(): { started: number; stopped: number; forcedStops: number; probes: number }
}

const DEFAULT_BEHAVIOUR: SimulatedBehaviour = {
  startup: 'qr',
  teardown: 'normal',
  liveness: 'healthy',
}

/** What the simulator remembers of a campaign beyond its sessions, in memory. */
interface CampaignMemory {
  behaviour: SimulatedBehaviour
  /**
   * Linked, as saved auth would be: its next session starts without a QR. Used only without a
   * data directory; with one, the saved login file is the one truth (./simulatedLogins.ts).
   */
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

/** The characters of WhatsApp's pairing codes (no 0, O, I or U). */
const PAIRING_CODE_ALPHABET = '123456789ABCDEFGHJKLMNPQRSTVWXYZ'

/** An 8-character pairing code, shaped like WhatsApp's. */
export function fakePairingCode(): string {
  let code = ''
  for (const byte of randomBytes(8)) code += PAIRING_CODE_ALPHABET[byte % 32]
  return code
}

export function createSimulatedEngine(options: SimulatedEngineOptions = {}): SimulatedEngine {
  const {
    clock = systemClock,
    dataDir,
    qrDelayMs = 300,
    qrRotateMs = 20_000,
    pairingCodeRenewMs = 180_000,
    authDelayMs = 500,
    destroyDelayMs = 20,
    destroyTimeoutMs = 10_000,
    killDelayMs = 10,
    killTimeoutMs = 5_000,
    maxRememberedCampaigns = 10_000,
    defaultProxy,
    ledger: withLedger = false,
    nodeId,
  } = options
  if (withLedger && dataDir === undefined) {
    throw new Error('the simulated engine keeps its ledger under a data directory: give dataDir')
  }
  const ledger = withLedger && dataDir !== undefined ? simulatedLedger(dataDir, nodeId) : undefined
  /**
   * Only campaigns with something to remember (a behaviour that is not the default, a link),
   * oldest change first. Anyone may set a behaviour, for any campaign: this bounds what that keeps.
   */
  const memory = new Map<string, CampaignMemory>()
  /** The saved logins: files under the data directory, or the links kept in `memory`. */
  const logins: SimulatedLogins =
    dataDir === undefined
      ? {
          has: (campaignId) => memory.get(campaignId)?.linked ?? false,
          save: (campaignId) => void remember(campaignId, { linked: true }),
          forget: (campaignId) => void remember(campaignId, { linked: false }),
        }
      : simulatedLoginFiles(dataDir, clock)
  /** The newest running instance of each campaign: the one the phone talks to. */
  const current = new Map<string, SimulatedSession>()
  const live = new Set<SimulatedSession>()
  const counts = { started: 0, stopped: 0, forcedStops: 0, probes: 0 }

  class SimulatedSession implements EngineSession {
    private timer: TimerHandle | undefined
    private showingQr = false
    /** The pairing code shown now, when the session links with a phone number. */
    private pairingCode: string | undefined
    private terminated = false
    private authenticated = false
    private stopping: Promise<EngineStopResult> | undefined
    private readonly behaviour: SimulatedBehaviour
    private ready = false
    /** Its ledger record is closed (a session's stop is written once). */
    private recordEnded = false

    constructor(private readonly options: EngineSessionOptions) {
      this.behaviour = behaviourOf(options.campaignId)
    }

    get campaignId(): string {
      return this.options.campaignId
    }

    get proxy(): ProxySettings | null {
      return this.options.proxy ?? defaultProxy ?? null
    }

    start(): void {
      ledger?.started(this.options.campaignId, this.options.sessionId)
      counts.started++
      live.add(this)
      current.set(this.options.campaignId, this)
      const { startup } = this.behaviour
      if (startup === 'hang') return
      if (startup === 'error') {
        this.schedule(qrDelayMs, () => this.terminate('start_failed', 'simulated start failure'))
      } else if (startup === 'restored' || logins.has(this.options.campaignId)) {
        this.schedule(qrDelayMs, () => {
          this.authenticate()
          this.schedule(authDelayMs, () => this.becomeReady())
        })
      } else if (this.options.pairWithPhoneNumber !== undefined) {
        this.schedule(qrDelayMs, () => this.showPairingCode())
      } else {
        this.schedule(qrDelayMs, () => this.showQr())
      }
    }

    scan(): boolean {
      if (!this.showingQr || this.isDead()) return false
      this.showingQr = false
      this.link()
      return true
    }

    enterPairingCode(code: string): boolean {
      if (this.pairingCode === undefined || this.pairingCode !== code || this.isDead()) return false
      this.pairingCode = undefined
      this.link()
      return true
    }

    /** The phone took the QR or the code: authenticated, then ready once the login is saved. */
    private link(): void {
      this.authenticate()
      this.schedule(authDelayMs, () => {
        try {
          logins.save(this.options.campaignId)
        } catch (error) {
          this.terminate('engine_error', `the login could not be saved: ${String(error)}`)
          return
        }
        this.becomeReady()
      })
    }

    /** As WhatsApp's page would answer `getState()`; the campaign's liveness, read now. */
    probe(): Promise<{ state: string }> {
      counts.probes++
      if (!this.ready || this.isDead()) {
        return Promise.reject(new Error('no WhatsApp page to ask'))
      }
      switch (behaviourOf(this.options.campaignId).liveness) {
        case 'healthy':
          return Promise.resolve({ state: 'CONNECTED' })
        case 'disconnected':
          return Promise.resolve({ state: 'TIMEOUT' })
        case 'hang':
          return new Promise(() => {})
      }
    }

    /** A crash keeps the saved login; only the phone (a logout) or an unlink deletes it. */
    terminate(kind: EngineTerminationKind, detail: string): boolean {
      if (this.isDead()) return false
      if (kind === 'logged_out') logins.forget(this.options.campaignId)
      // A crash leaves nothing running; any other end keeps the session until its stop.
      if (kind === 'crashed') this.endRecord('crashed')
      this.deliver({ type: 'terminated', kind, detail })
      this.terminated = true
      this.showingQr = false
      this.pairingCode = undefined
      this.cancelTimer()
      return true
    }

    stop(options: EngineStopOptions = {}): Promise<EngineStopResult> {
      this.stopping ??= this.runStop(options.logout === true, options.force === true)
      return this.stopping
    }

    /** True while started, neither terminated nor asked to stop. */
    isRunning(): boolean {
      return live.has(this) && !this.isDead()
    }

    private async runStop(logout: boolean, force = false): Promise<EngineStopResult> {
      const startedAt = clock.now()
      // The logout comes first, as in the real engine; WhatsApp accepts it from a linked device.
      const loggedOut = logout && this.authenticated && !this.terminated
      if (logout) logins.forget(this.options.campaignId)
      this.cancelTimer()
      this.showingQr = false
      this.pairingCode = undefined
      const gracefulMs = this.behaviour.teardown === 'hang' ? Infinity : destroyDelayMs
      const forced = force || gracefulMs > destroyTimeoutMs
      const graceMs = force ? 0 : destroyTimeoutMs
      await wait(forced ? graceMs + Math.min(killDelayMs, killTimeoutMs) : gracefulMs)
      live.delete(this)
      this.endRecord('stopped')
      if (current.get(this.options.campaignId) === this) current.delete(this.options.campaignId)
      counts.stopped++
      if (forced) counts.forcedStops++
      const result = { forced, durationMs: clock.now() - startedAt }
      return logout ? { ...result, loggedOut } : result
    }

    /** Writes the session's ledger stop, once (a crashed session is stopped later too). */
    endRecord(how: LedgerStopKind): void {
      if (ledger === undefined || this.recordEnded) return
      this.recordEnded = true
      ledger.stopped(this.options.campaignId, this.options.sessionId, how)
    }

    private becomeReady(): void {
      this.ready = true
      this.deliver({ type: 'ready' })
    }

    private authenticate(): void {
      this.authenticated = true
      this.deliver({ type: 'authenticated' })
    }

    private showQr(): void {
      this.showingQr = true
      this.deliver({ type: 'qr', qr: fakeWhatsAppQr() })
      this.schedule(qrRotateMs, () => this.showQr())
    }

    /** A new code every `pairingCodeRenewMs` while unpaired, as whatsapp-web.js renews it. */
    private showPairingCode(): void {
      this.pairingCode = fakePairingCode()
      this.deliver({ type: 'pairing_code', code: this.pairingCode })
      this.schedule(pairingCodeRenewMs, () => this.showPairingCode())
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

  /** The process exits with sessions still running: they go with it, and the ledger says so. */
  const recordExit = () => {
    for (const session of live) session.endRecord('exit')
  }
  if (ledger !== undefined) process.once('exit', recordExit)

  function wait(ms: number): Promise<void> {
    return new Promise((resolve) => clock.setTimeout(resolve, ms))
  }

  function behaviourOf(campaignId: string): SimulatedBehaviour {
    return memory.get(campaignId)?.behaviour ?? DEFAULT_BEHAVIOUR
  }

  /** Changes what is remembered of a campaign; it becomes the newest, or is dropped if default. */
  function remember(campaignId: string, change: Partial<CampaignMemory>): CampaignMemory {
    const next = {
      behaviour: behaviourOf(campaignId),
      linked: memory.get(campaignId)?.linked ?? false,
      ...change,
    }
    memory.delete(campaignId)
    const isDefault =
      !next.linked &&
      next.behaviour.startup === DEFAULT_BEHAVIOUR.startup &&
      next.behaviour.teardown === DEFAULT_BEHAVIOUR.teardown &&
      next.behaviour.liveness === DEFAULT_BEHAVIOUR.liveness
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
    enterPairingCode: (campaignId, code) => running(campaignId)?.enterPairingCode(code) ?? false,
    disconnect: (campaignId) =>
      running(campaignId)?.terminate('logged_out', 'the phone logged the device out') ?? false,
    crash: (campaignId) =>
      running(campaignId)?.terminate('crashed', 'simulated crash: the browser is gone') ?? false,
    setBehaviour: (campaignId, behaviour) =>
      remember(campaignId, { behaviour: { ...behaviourOf(campaignId), ...behaviour } }).behaviour,
    behaviourOf,
    proxyInUse: (campaignId) => {
      const session = running(campaignId)
      return session?.isRunning() ? viewOfProxy(session.proxy) : null
    },
    isLinked: (campaignId) => logins.has(campaignId),
    async forgetLogin(campaignId) {
      if (running(campaignId)?.isRunning()) {
        throw new Error(`a session of campaign ${campaignId} is running: stop it first`)
      }
      logins.forget(campaignId)
    },
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
      process.removeListener('exit', recordExit)
    },
  }
}
