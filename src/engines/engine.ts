/**
 * The engine contract: what a campaign session needs from any WhatsApp engine.
 *
 * It is shaped by what whatsapp-web.js really does (see docs/engines.md and docs/whatsapp-web.md):
 * `initialize()` may reject, hang forever, or resolve long before anything useful happens;
 * Chromium may die without a word; `destroy()` may block on a frozen browser. So:
 *
 * - `start()` launches and returns at once. It never waits for a person and never throws:
 *   every failure arrives later as one `terminated` event.
 * - Events arrive in order through `onEvent`: `qr` (raw QR text, again on each rotation),
 *   `authenticated` (the phone scanned, or saved auth was accepted), `ready`, and at most one
 *   `terminated`, after which the instance is dead.
 * - `stop()` is idempotent (every call returns the same promise), never rejects, and settles
 *   within `destroyTimeoutMs + killTimeoutMs`: a graceful phase, then a forced one. Once `stop()`
 *   has been called, no event is delivered any more.
 *
 * @module
 */

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

export type EngineEvent =
  | { type: 'qr'; qr: string }
  | { type: 'authenticated' }
  | { type: 'ready' }
  | { type: 'terminated'; kind: EngineTerminationKind; detail: string }

export interface EngineStopResult {
  /** True when the graceful phase did not finish in time and the engine was killed. */
  forced: boolean
  durationMs: number
}

export interface EngineSessionOptions {
  campaignId: string
  sessionId: string
  /** Called for every engine event, never re-entrantly from `start()` and never after `stop()`. */
  onEvent(event: EngineEvent): void
}

/** One attempt to run a WhatsApp client. One instance, one start, one stop. */
export interface EngineSession {
  start(): void
  /** With `logout`, the graceful phase first logs the device out of WhatsApp. */
  stop(options?: { logout?: boolean }): Promise<EngineStopResult>
}

export interface Engine {
  readonly name: string
  createSession(options: EngineSessionOptions): EngineSession
  /**
   * Deletes the campaign's saved login (no session of it runs). Idempotent. Absent from an
   * engine that saves no login.
   */
  forgetLogin?(campaignId: string): Promise<void>
  /** Releases engine-wide resources. Sessions must have been stopped first. */
  close(): Promise<void>
}
