/**
 * The engine contract: what a campaign session needs from any WhatsApp engine.
 *
 * It is shaped by what whatsapp-web.js really does (see docs/engines.md and docs/whatsapp-web.md):
 * `initialize()` may reject, hang forever, or resolve long before anything useful happens;
 * Chromium may die without a word; `destroy()` may block on a frozen browser. So:
 *
 * - `start()` launches and returns at once. It never waits for a person and never throws:
 *   every failure arrives later as one `terminated` event.
 * - Events arrive in order through `onEvent`: `qr` (raw QR text, again on each rotation), or
 *   `pairing_code` instead when the session links with a phone number (again on each renewal),
 *   `authenticated` (the phone scanned, or saved auth was accepted), `ready`, and at most one
 *   `terminated`, after which the instance is dead.
 * - `stop()` is idempotent (every call returns the same promise), never rejects, and settles
 *   within `destroyTimeoutMs + killTimeoutMs`: a graceful phase, then a forced one. Once `stop()`
 *   has been called, no event is delivered any more. `stop({ logout: true })` ends the login too:
 *   the graceful phase first logs the device out of WhatsApp (when the session is authenticated),
 *   and the campaign's saved login is deleted.
 * - `forgetLogin()` deletes a campaign's saved login once no session of it runs (an unlink).
 * - `probe()` asks a ready session whether WhatsApp is connected. It may never settle (a frozen
 *   page): the caller bounds it with its own timeout and ignores a late answer.
 *
 * @module
 */

import type { ProxySettings } from '../proxy.ts'

/** Why an engine instance ended on its own. */
export type EngineTerminationKind =
  /** The engine could not be launched or initialized (no browser, no network, profile locked). */
  | 'start_failed'
  /** The phone logged the device out; the saved auth is gone and a new scan is needed. */
  | 'logged_out'
  /** The engine died without warning (the browser process is gone). */
  | 'crashed'
  /** Any other failure the engine reported. */
  | 'engine_error'
  /**
   * The node lost the campaign's lease (it could not renew it in time): the engine was killed so
   * that the node taking the campaign over never runs a second one. Never restarted here.
   */
  | 'lease_lost'

export type EngineEvent =
  | { type: 'qr'; qr: string }
  /** The 8-character code to type on the phone (sessions started with `pairWithPhoneNumber`). */
  | { type: 'pairing_code'; code: string }
  | { type: 'authenticated' }
  | { type: 'ready' }
  | { type: 'terminated'; kind: EngineTerminationKind; detail: string }

export interface EngineStopOptions {
  /**
   * End the login as well (an unlink): the graceful phase first logs the device out of WhatsApp,
   * if the session is authenticated and alive (best effort: a failed or hung logout only tears
   * down, within the same bound), and the campaign's saved login is deleted in every case. The
   * first call's options decide; later calls return the first call's promise.
   */
  logout?: boolean
  /**
   * Skip the graceful phase: kill at once, within the forced phase's bound (`KILL_TIMEOUT_MS`).
   * For a node fencing itself off a lease it can no longer prove: there is no time for a
   * graceful `destroy()`.
   */
  force?: boolean
}

export interface EngineStopResult {
  /** True when the graceful phase did not finish in time and the engine was killed. */
  forced: boolean
  durationMs: number
  /** With `logout: true`: true when WhatsApp was told to log the device out, and accepted it. */
  loggedOut?: boolean
}

export interface EngineSessionOptions {
  campaignId: string
  sessionId: string
  /**
   * Link with a phone number instead of a QR (international format, digits only): the engine
   * emits `pairing_code` events, never `qr`.
   */
  pairWithPhoneNumber?: string
  /** The campaign's proxy; without it the engine's own default (`WA_PROXY`), if any. */
  proxy?: ProxySettings
  /**
   * The campaign was taken over from another node of a cluster, whose engine is gone (its lease
   * was released, or expired and the takeover wait passed): what it left in the campaign's
   * saved-login folder that locks it to its host (Chromium's `Singleton*` files) is stale, and is
   * removed before launching.
   */
  takeover?: boolean
  /** Called for every engine event, never re-entrantly from `start()` and never after `stop()`. */
  onEvent(event: EngineEvent): void
}

/** What a liveness probe saw. */
export interface EngineProbeResult {
  /**
   * WhatsApp's connection state as the page reports it (whatsapp-web.js's `WAState`):
   * `CONNECTED` when alive; anything else (`TIMEOUT`, `OPENING`, `unknown`) counts as a miss.
   */
  state: string
}

/** One attempt to run a WhatsApp client. One instance, one start, one stop. */
export interface EngineSession {
  start(): void
  stop(options?: EngineStopOptions): Promise<EngineStopResult>
  /**
   * Asks the session whether WhatsApp is connected (called only while it is ready). Rejects when
   * there is nothing to ask (no page) or the page failed to answer; may never settle when the
   * page hangs, so the caller bounds it (`LIVENESS_TIMEOUT_MS`).
   */
  probe(): Promise<EngineProbeResult>
  /**
   * The OS processes of the session's browser, each leading its process group (which holds the
   * rest of the browser): empty before the launch and once the teardown has seen them gone (their
   * pids may be reused then). For a watchdog that kills browsers when the main thread cannot.
   * Absent from an engine with no processes of its own (the simulated engine).
   */
  pids?(): number[]
}

export interface Engine {
  readonly name: string
  createSession(options: EngineSessionOptions): EngineSession
  /**
   * Deletes the campaign's saved login, so its next session needs a new scan. Call it once no
   * session of the campaign runs (it rejects if one does, and waits for a teardown in progress).
   * Idempotent: resolves at once when there is nothing to delete. It touches only the campaign's
   * own entry under the engine's data directory, and rejects a campaign id that would leave it.
   * Absent from an engine that saves no login (test doubles).
   */
  forgetLogin?(campaignId: string): Promise<void>
  /** Releases engine-wide resources. Sessions must have been stopped first. */
  close(): Promise<void>
}
