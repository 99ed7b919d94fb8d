/**
 * The wwebjs engine's options, and the state its sessions share.
 *
 * @module
 */
import type { Clock } from '../../clock.ts'
import type { Logger } from '../../logger.ts'
import type { EngineStopResult } from '../engine.ts'
import type { ProxySettings } from '../../proxy.ts'

export interface WwebjsEngineOptions {
  /** The service's DATA_DIR; profiles live under `<dataDir>/wwebjs/`. */
  dataDir: string
  /** Chromium or Chrome executable (see `findChromium`). */
  chromePath: string
  /** How long `destroy()` (a graceful browser close) may take before Chromium is killed. */
  destroyTimeoutMs: number
  /** How long to wait, after SIGKILL, for the session's processes to vanish. */
  killTimeoutMs: number
  clock?: Clock
  logger?: Logger
  /** Appended to Chromium's command line (tests use it to fake or cut the network). */
  extraChromiumArgs?: string[]
  /**
   * How long whatsapp-web.js waits, once the page has loaded, for WhatsApp Web's code to appear
   * (its `authTimeoutMs`); then `initialize()` rejects with the string `'auth timeout'`. The
   * default is longer than the session's init deadline, so that deadline normally decides.
   */
  whatsappLoadTimeoutMs?: number
  /**
   * How often WhatsApp Web is asked for a new pairing code while a session that links with a
   * phone number is unpaired (whatsapp-web.js's `intervalMs`; WhatsApp's own: 180 s).
   */
  pairingCodeIntervalMs?: number
  /** The proxy of sessions that bring none of their own (`WA_PROXY`). */
  defaultProxy?: ProxySettings
}

/** The default of `pairingCodeIntervalMs`. */
export const DEFAULT_PAIRING_CODE_INTERVAL_MS = 180_000

/** The default of `whatsappLoadTimeoutMs`. */
export const DEFAULT_WHATSAPP_LOAD_TIMEOUT_MS = 120_000

export interface SharedState {
  options: WwebjsEngineOptions
  clock: Clock
  logger: Logger
  profilesRoot: string
  /** Sessions that have started and not finished tearing down. */
  sessions: Set<{
    readonly campaignId: string
    /** Started, and neither stopping nor terminated. */
    isRunning(): boolean
    stop(): Promise<EngineStopResult>
  }>
  /**
   * The work in progress on each campaign's profile (teardowns, a login's deletion): the next
   * session of the campaign, or the next deletion, waits for all of it (./profiles.ts).
   */
  profileWork: Map<string, Promise<unknown>>
}
