/**
 * One wwebjs session: one whatsapp-web.js client, driving one system Chromium, from `start()` to
 * a teardown that always ends.
 *
 * whatsapp-web.js 1.34 is not built to be supervised (see docs/engines.md and
 * docs/whatsapp-web.md), so this adapter supplies what it lacks:
 *
 * - It hears Chromium die. whatsapp-web.js ignores puppeteer's `disconnected`; we hook it from a
 *   `LocalAuth` subclass whose `afterBrowserInitialized` runs right after the browser is set
 *   (./patches.ts).
 * - Its teardown always ends. `destroy()` does nothing while the browser is still launching and
 *   blocks on a frozen one. So: a launch in progress is aborted through puppeteer's `signal`;
 *   `destroy()` gets `destroyTimeoutMs`; then everything left of the session (found in /proc by
 *   its marks and its process group) is SIGKILLed, and `stop()` resolves only when none of it is
 *   left, or `killTimeoutMs` has passed (./teardown.ts).
 * - Its loose promises stay caught (./patches.ts): a failure there becomes an event, not an
 *   unhandled rejection.
 * - It never deletes a live profile. `LocalAuth.logout()` would `rm -rf` the profile under a running
 *   Chromium on a phone-side logout; ours does nothing, and the profile is wiped after the browser
 *   is gone (./profiles.ts).
 * - An unlink (`stop({ logout: true })`) is the one place where whatsapp-web.js's `logout()` is the
 *   intent. It runs inside the graceful phase, so a hung logout is killed like a hung `destroy()`.
 *
 * @module
 */
import wweb from 'whatsapp-web.js'
import type { Logger } from '../../logger.ts'
import type {
  EngineEvent,
  EngineProbeResult,
  EngineSession,
  EngineSessionOptions,
  EngineStopOptions,
  EngineStopResult,
  EngineTerminationKind,
} from '../engine.ts'
import { chromiumEnvironment, markerArgs, markerEnv } from './chromium.ts'
import { whyNotWritable } from './dataDir.ts'
import { describeThrown, terminationKindForDisconnect } from './failures.ts'
import {
  DEFAULT_PAIRING_CODE_INTERVAL_MS,
  DEFAULT_WHATSAPP_LOAD_TIMEOUT_MS,
  type SharedState,
} from './options.ts'
import {
  guardLoosePromises,
  HookedLocalAuth,
  type Browser,
  type Page,
  type WwebjsClient,
} from './patches.ts'
import { removeProfileLocks } from './janitor.ts'
import { occupyProfile, profileDirOf, releaseProfile } from './profiles.ts'
import { killSessionProcesses, settlesWithin } from './teardown.ts'
import { sessionTag } from '../../sessionTag.ts'
import type { ProxySettings } from '../../proxy.ts'

// whatsapp-web.js is CommonJS: only the default import carries every class.
const { Client } = wweb

/** How long a crash report waits for the browser's exit status (it follows the disconnect). */
const BROWSER_EXIT_WAIT_MS = 250

/** One session: its client and browser, from launch to a teardown that always ends. */
export class WwebjsSession implements EngineSession {
  readonly #shared: SharedState
  readonly #campaignId: string
  readonly #sessionId: string
  readonly #onEvent: (event: EngineEvent) => void
  /** Link with this phone number by a pairing code instead of a QR. */
  readonly #pairWithPhoneNumber: string | undefined
  /** The campaign's proxy, or the engine's default; undefined: Chromium connects directly. */
  readonly #proxy: ProxySettings | undefined
  readonly #log: Logger
  readonly #profileDir: string
  /** Taken over from another node: the profile's locks are stale (see `EngineSessionOptions`). */
  readonly #takeover: boolean
  readonly #abortLaunch = new AbortController()

  #started = false
  /** Set when teardown begins (by `stop()` or after `terminated`): no event goes out after it. */
  #stopping = false
  #terminated = false
  #initializeSettled = false
  #authenticatedSent = false
  #readySent = false
  #wipeProfileAfterTeardown = false
  /** Set when whatsapp-web.js's `logout()` resolved during an unlink. */
  #loggedOut = false
  #client: WwebjsClient | undefined
  #browser: Browser | undefined
  #browserPid: number | undefined
  /** Every browser pid of this session seen, so its profile locks can be told from others'. */
  readonly #browserPids = new Set<number>()
  /** Set once the teardown saw every process of the session gone: their pids may be reused. */
  #processesGone = false
  #teardown: Promise<EngineStopResult> | undefined

  constructor(
    shared: SharedState,
    { campaignId, sessionId, onEvent, pairWithPhoneNumber, proxy, takeover }: EngineSessionOptions
  ) {
    this.#takeover = takeover === true
    this.#proxy = proxy ?? shared.options.defaultProxy
    this.#shared = shared
    this.#campaignId = campaignId
    this.#sessionId = sessionId
    this.#onEvent = onEvent
    this.#pairWithPhoneNumber = pairWithPhoneNumber
    this.#log = shared.logger.child({ campaignId, session: sessionTag(sessionId) })
    this.#profileDir = profileDirOf(shared.profilesRoot, campaignId)
  }

  get campaignId(): string {
    return this.#campaignId
  }

  isRunning(): boolean {
    return this.#started && !this.#stopping
  }

  start(): void {
    if (this.#started || this.#stopping) return
    this.#started = true
    this.#shared.sessions.add(this)
    this.#run().catch((error: unknown) => {
      // #run catches everything it expects; this is the net under a bug.
      this.#log.error({ err: error }, 'unexpected failure while starting')
      this.#terminate('engine_error', `unexpected failure while starting: ${describeThrown(error)}`)
    })
  }

  stop(options: EngineStopOptions = {}): Promise<EngineStopResult> {
    return this.#beginTeardown(
      options.force ? 'fenced: killed at once' : 'stop requested',
      options.logout === true,
      options.force === true
    )
  }

  pids(): number[] {
    return this.#processesGone ? [] : [...this.#browserPids]
  }

  /**
   * WhatsApp's connection state, as whatsapp-web.js's `getState()` reads it in the page: an answer
   * at all proves the page runs; `CONNECTED` proves its socket to WhatsApp is up. Only a ready
   * session is asked (before that there is nothing to ask, and no Chromium work is done).
   */
  async probe(): Promise<EngineProbeResult> {
    const client = this.#client
    if (!client || !this.#readySent || this.#stopping) throw new Error('no WhatsApp page to ask')
    const state: unknown = await client.getState()
    return { state: typeof state === 'string' ? state : 'unknown' }
  }

  async #run(): Promise<void> {
    // Never deliver an event from inside start(): everything below runs after it returned.
    await Promise.resolve()
    // The campaign machine already starts a session only once its predecessor is gone
    // (`waitingForPredecessor`). This wait is the engine's own safety, not a second copy of that
    // rule: two Chromiums on one profile corrupt it, the machine's teardown bound may pass before
    // a forced kill is over, and the engine is also used without the machine (bench-wwebjs).
    // A deletion of the campaign's login (forgetLogin) is waited for the same way.
    const profileWork = this.#shared.profileWork.get(this.#campaignId)
    if (profileWork) {
      this.#log.debug('waiting for the previous work on the profile of this campaign')
      await profileWork
    }
    if (this.#stopping) return
    // On a full disk Chromium runs on without saving the login, saying nothing: refuse instead.
    const unwritable = await whyNotWritable(this.#shared.profilesRoot)
    if (this.#stopping) return
    if (unwritable !== undefined) {
      this.#terminate('start_failed', `DATA_DIR: ${unwritable}`)
      return
    }
    if (this.#takeover) {
      // The lease says the other node's browser is gone; its lock names that node's host, and
      // Chromium would refuse the profile ("in use by another computer").
      const removed = removeProfileLocks(this.#profileDir)
      if (removed > 0)
        this.#log.info({ removed }, 'took the campaign over: removed its stale profile locks')
    }

    let client: WwebjsClient
    try {
      client = this.#createClient()
    } catch (error) {
      this.#terminate('start_failed', describeThrown(error))
      return
    }
    this.#client = client
    this.#listen(client)
    this.#log.info('starting whatsapp-web.js')
    try {
      await client.initialize()
      this.#initializeSettled = true
      this.#log.debug('initialize() resolved')
    } catch (error) {
      this.#initializeSettled = true
      if (this.#stopping) return
      // A browser that was up and is gone means it died; anything else is a failed start.
      const died = this.#browser !== undefined && !this.#browser.connected
      const how = died ? await this.#howBrowserEnded() : ''
      this.#terminate(
        died ? 'crashed' : 'start_failed',
        `initialize() failed: ${describeThrown(error)}${how}`
      )
    }
  }

  #createClient(): WwebjsClient {
    const {
      chromePath,
      extraChromiumArgs = [],
      whatsappLoadTimeoutMs,
      pairingCodeIntervalMs = DEFAULT_PAIRING_CODE_INTERVAL_MS,
    } = this.#shared.options
    const args = [
      // Chromium refuses to run as root with its sandbox on; elsewhere the sandbox stays.
      ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
      // Containers give /dev/shm 64 MB, which Chromium outgrows; /tmp is used instead.
      '--disable-dev-shm-usage',
      ...markerArgs(this.#campaignId, this.#sessionId),
      // The address only: Chromium asks for credentials on a 407, answered below.
      ...(this.#proxy ? [`--proxy-server=${this.#proxy.server}`] : []),
      ...extraChromiumArgs,
    ]
    const authStrategy = new HookedLocalAuth(
      { clientId: this.#campaignId, dataPath: this.#shared.profilesRoot },
      (browser, page) => this.#onBrowserLaunched(browser, page)
    )
    const client = new Client({
      authStrategy,
      // 'local' would write WhatsApp's HTML under the working directory; 'none' loads it live.
      webVersionCache: { type: 'none' },
      // The session's scan deadline owns the QR budget.
      qrMaxRetries: 0,
      authTimeoutMs: whatsappLoadTimeoutMs ?? DEFAULT_WHATSAPP_LOAD_TIMEOUT_MS,
      // whatsapp-web.js gives them to puppeteer's page.authenticate() before the first navigation.
      ...(this.#proxy?.credentials ? { proxyAuthentication: this.#proxy.credentials } : {}),
      // With a phone number whatsapp-web.js emits `code` (renewed every interval) instead of `qr`.
      ...(this.#pairWithPhoneNumber !== undefined
        ? {
            pairWithPhoneNumber: {
              phoneNumber: this.#pairWithPhoneNumber,
              showNotification: true,
              intervalMs: pairingCodeIntervalMs,
            },
          }
        : {}),
      puppeteer: {
        executablePath: chromePath,
        headless: true,
        args,
        // Only what Chromium needs: the service's secrets stay out of every browser process.
        env: {
          ...chromiumEnvironment(),
          ...markerEnv(this.#campaignId, this.#sessionId, this.#profileDir),
        },
        // Aborting kills a browser that is still launching, which destroy() cannot (wwebjs #3052).
        signal: this.#abortLaunch.signal,
        // The service owns signal handling and shuts sessions down itself. (puppeteer still
        // kills every browser when Node exits, which is what we want.)
        handleSIGINT: false,
        handleSIGTERM: false,
        handleSIGHUP: false,
      },
    })
    guardLoosePromises(client, {
      // During initialize() the error must reach initialize()'s caller: that is us.
      rethrowInjectFailure: () => !this.#initializeSettled,
      onInjectFailed: (error) => {
        if (this.#stopping) return
        this.#log.warn({ err: error }, 'WhatsApp Web could not be re-injected after a navigation')
        this.#terminate(
          'engine_error',
          `re-injection after a navigation failed: ${describeThrown(error)}`
        )
      },
      // The browser is killed by our teardown anyway.
      onDestroyFailed: (error) =>
        this.#log.debug({ err: error }, 'whatsapp-web.js destroy() failed'),
    })
    return client
  }

  #listen(client: WwebjsClient): void {
    client.on('qr', (qr: string) => {
      if (this.#readySent) {
        // WhatsApp shows a QR again only when this device was unlinked. The machine reads a QR
        // after ready the same way (ready → failed: logged_out); the engine still needs to know
        // itself, for its own safety: the saved auth is dead and must be wiped once Chromium is
        // gone, which only the engine can do.
        this.#terminate('logged_out', 'a new QR code appeared after ready: the device was unlinked')
        return
      }
      this.#emit({ type: 'qr', qr })
    })
    client.on('code', (code: string) => {
      // Its renewal timer stops on its own once paired; a code that crosses the scan is stale.
      if (this.#authenticatedSent) return
      this.#emit({ type: 'pairing_code', code })
    })
    // whatsapp-web.js may repeat both after a re-injection; the contract wants each once.
    client.on('authenticated', () => {
      if (this.#authenticatedSent) return
      this.#authenticatedSent = true
      this.#emit({ type: 'authenticated' })
    })
    client.on('ready', () => {
      if (this.#readySent) return
      if (!this.#authenticatedSent) {
        this.#authenticatedSent = true
        this.#emit({ type: 'authenticated' })
      }
      this.#readySent = true
      this.#emit({ type: 'ready' })
    })
    client.on('loading_screen', (percent: unknown) => {
      this.#log.debug({ percent }, 'WhatsApp is loading')
    })
    client.on('disconnected', (reason: unknown) => {
      const kind = terminationKindForDisconnect(String(reason))
      this.#terminate(kind, `WhatsApp disconnected: ${String(reason)}`)
    })
    // The built-in strategies never emit it; handled in case a future version does.
    client.on('auth_failure', (message: unknown) => {
      this.#terminate('engine_error', `authentication failed: ${String(message)}`)
    })
    // An 'error' event with no listener would throw inside whatsapp-web.js.
    client.on('error', (error: unknown) => {
      this.#log.warn({ err: error }, 'whatsapp-web.js reported an error')
    })
  }

  #onBrowserLaunched(browser: Browser, page: Page): void {
    // The LOGOUT path of whatsapp-web.js runs this hook again on the same browser.
    if (this.#browser === browser) return
    this.#browser = browser
    this.#browserPid = browser.process()?.pid
    if (this.#browserPid !== undefined) this.#browserPids.add(this.#browserPid)
    this.#log.debug({ pid: this.#browserPid }, 'Chromium launched')
    browser.once('disconnected', () => {
      void this.#howBrowserEnded().then((how) =>
        this.#terminate('crashed', `Chromium exited unexpectedly${how}`)
      )
    })
    page.once('error', (error: Error) => {
      this.#terminate('crashed', `the WhatsApp page crashed: ${error.message}`)
    })
  }

  /**
   * ` (killed by SIGKILL)` or ` (exit code 1)`: how the browser process ended, for the detail
   * (a browser killed by SIGKILL was most often the kernel's out-of-memory killer). Its connection
   * closes before its exit is reported, so this waits for the exit, briefly.
   */
  async #howBrowserEnded(): Promise<string> {
    const child = this.#browser?.process()
    if (!child) return ''
    if (child.exitCode === null && child.signalCode === null) {
      const { clock } = this.#shared
      await new Promise<void>((resolve) => {
        const timer = clock.setTimeout(resolve, BROWSER_EXIT_WAIT_MS)
        child.once('exit', () => {
          clock.clearTimeout(timer)
          resolve()
        })
      })
    }
    if (child.signalCode !== null) return ` (killed by ${child.signalCode})`
    return child.exitCode !== null ? ` (exit code ${child.exitCode})` : ''
  }

  #emit(event: EngineEvent): void {
    if (this.#stopping || this.#terminated) return
    this.#deliver(event)
  }

  #deliver(event: EngineEvent): void {
    try {
      this.#onEvent(event)
    } catch (error) {
      this.#log.error({ err: error, event: event.type }, 'engine event listener threw')
    }
  }

  /** The one `terminated` event; a dead instance holds no browser, so teardown starts at once. */
  #terminate(kind: EngineTerminationKind, detail: string): void {
    if (this.#terminated || this.#stopping) return
    this.#terminated = true
    // The saved auth is dead; wipe it, but only once no Chromium holds the profile.
    if (kind === 'logged_out') this.#wipeProfileAfterTeardown = true
    this.#log.warn({ kind, detail }, 'engine session terminated')
    this.#deliver({ type: 'terminated', kind, detail })
    void this.#beginTeardown(`terminated: ${kind}`)
  }

  /** The first call decides (`logout` included); later calls return its promise. */
  #beginTeardown(reason: string, logout = false, force = false): Promise<EngineStopResult> {
    if (!this.#teardown) {
      this.#stopping = true
      const teardown = this.#tearDown(reason, logout, force)
      this.#teardown = teardown
      occupyProfile(this.#shared.profileWork, this.#campaignId, teardown)
      void teardown.then(() => this.#shared.sessions.delete(this))
    }
    return this.#teardown
  }

  /** Never rejects; settles within destroyTimeoutMs + killTimeoutMs (plus a few polls). */
  async #tearDown(reason: string, logout: boolean, force: boolean): Promise<EngineStopResult> {
    const { clock, options } = this.#shared
    const startedAt = clock.now()
    let forced = false
    let loggedOut = false
    this.#log.debug({ reason, logout }, 'tearing down')
    // An unlink: the saved login goes once Chromium is gone, whether WhatsApp heard the logout
    // or not (it cannot when the session is not linked and live).
    if (logout) this.#wipeProfileAfterTeardown = true
    try {
      if (force && this.#client) {
        // Fencing: the lease may expire before a graceful destroy() could finish.
        forced = true
      } else if (this.#client && !this.#browser) {
        // Still launching: destroy() would return at once and the browser would launch anyway.
        // Aborting makes puppeteer SIGKILL the spawned group, or refuse to spawn one.
        forced = true
        this.#abortLaunch.abort()
      } else if (this.#client) {
        const graceful =
          logout && this.#canLogOut()
            ? this.#logOutThenDestroy(this.#client)
            : this.#client.destroy()
        const closed = await settlesWithin(graceful, options.destroyTimeoutMs, clock)
        // Read now: a logout still pending is killed below and cannot have succeeded.
        loggedOut = this.#loggedOut
        if (!closed) {
          forced = true
          this.#log.warn(
            { destroyTimeoutMs: options.destroyTimeoutMs },
            'destroy() did not finish in time; killing Chromium'
          )
        }
      }
      this.#abortLaunch.abort()
      const survivors = await killSessionProcesses({
        sessionId: this.#sessionId,
        browserPid: this.#browserPid,
        browserPids: this.#browserPids,
        killTimeoutMs: options.killTimeoutMs,
        clock,
      })
      if (survivors.length > 0) {
        this.#log.error(
          { pids: survivors.map((survivor) => survivor.pid), killTimeoutMs: options.killTimeoutMs },
          'Chromium processes survived SIGKILL; the profile keeps its locks'
        )
      } else {
        this.#processesGone = true
        if (this.#client) {
          releaseProfile({
            profileDir: this.#profileDir,
            browserPids: [...this.#browserPids],
            wipe: this.#wipeProfileAfterTeardown,
            log: this.#log,
          })
        }
      }
    } catch (error) {
      this.#log.error({ err: error }, 'teardown failed')
    }
    this.#client?.removeAllListeners()
    const durationMs = clock.now() - startedAt
    this.#log.info({ forced, durationMs, ...(logout && { loggedOut }) }, 'engine session torn down')
    return logout ? { forced, durationMs, loggedOut } : { forced, durationMs }
  }

  /**
   * WhatsApp accepts a logout only from a linked device on a live page; otherwise `logout()`
   * throws (no page, a closed target) and there is nothing to tell WhatsApp anyway.
   */
  #canLogOut(): boolean {
    return (
      this.#authenticatedSent &&
      !this.#terminated &&
      this.#browser?.connected === true &&
      Boolean(this.#client?.pupPage)
    )
  }

  /**
   * whatsapp-web.js's `logout()`: WhatsApp's own logout in the page, then a browser close. Its
   * `LocalAuth.logout()` step is ours and does nothing: the profile is wiped after the teardown.
   * Never rejects; `destroy()` follows in every case (a no-op when the browser is closed).
   */
  async #logOutThenDestroy(client: WwebjsClient): Promise<void> {
    try {
      await client.logout()
      this.#loggedOut = true
      this.#log.info('logged the device out of WhatsApp')
    } catch (error) {
      this.#log.warn({ err: error }, 'could not log the device out of WhatsApp; tearing down')
    }
    await client.destroy()
  }
}
