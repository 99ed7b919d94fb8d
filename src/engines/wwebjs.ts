/**
 * The real engine: one whatsapp-web.js client, driving one system Chromium, per session.
 *
 * whatsapp-web.js 1.34 is not built to be supervised (see docs/engines.md and
 * docs/whatsapp-web.md), so this adapter supplies what it lacks:
 *
 * - It hears Chromium die. whatsapp-web.js ignores puppeteer's `disconnected`; we hook it from a
 *   `LocalAuth` subclass whose `afterBrowserInitialized` runs right after the browser is set.
 * - Its teardown always ends. `destroy()` does nothing while the browser is still launching and
 *   blocks on a frozen one. So: a launch in progress is aborted through puppeteer's `signal`;
 *   `destroy()` gets `destroyTimeoutMs`; then everything left of the session (found in /proc by
 *   its marks and its process group) is SIGKILLed, and `stop()` resolves only when none of it is
 *   left, or `killTimeoutMs` has passed.
 * - Its loose promises stay caught. The re-injection after a page navigation and the
 *   self-`destroy()` on a bad WhatsApp state are fire-and-forget inside whatsapp-web.js; we wrap
 *   both on the client instance, so a failure there becomes an event, not an unhandled rejection.
 * - It never deletes a live profile. `LocalAuth.logout()` would `rm -rf` the profile under a running
 *   Chromium on a phone-side logout; ours does nothing, and the profile is wiped after the browser
 *   is gone.
 *
 * Each campaign has one profile, `<dataDir>/wwebjs/session-<campaignId>`, so a linked campaign
 * comes back without a new scan. Two browsers cannot share a profile, so a session waits for the
 * previous session of its campaign to finish tearing down before it launches.
 *
 * @module
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { inspect } from 'node:util'
import wweb from 'whatsapp-web.js'
import { systemClock, type Clock } from '../clock.ts'
import { silentLogger, type Logger } from '../logger.ts'
import type {
  Engine,
  EngineEvent,
  EngineSession,
  EngineSessionOptions,
  EngineStopResult,
  EngineTerminationKind,
} from './engine.ts'
import {
  chromiumEnvironment,
  findSessionProcesses,
  markerArgs,
  markerEnv,
  SESSION_MARKER,
} from './chromium.ts'
import { whyNotWritable } from './dataDir.ts'
import { profilesRoot, removeProfileLocks } from './janitor.ts'
import { killProcess, killProcessGroup, waitUntilGone, type ProcessInfo } from './processes.ts'
import { sessionTag } from '../sessionTag.ts'

// whatsapp-web.js is CommonJS: only the default import carries every class.
const { Client, LocalAuth } = wweb
type WwebjsClient = InstanceType<typeof Client>
type Browser = NonNullable<WwebjsClient['pupBrowser']>
type Page = NonNullable<WwebjsClient['pupPage']>

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
}

const DEFAULT_WHATSAPP_LOAD_TIMEOUT_MS = 120_000

/** How long a crash report waits for the browser's exit status (it follows the disconnect). */
const BROWSER_EXIT_WAIT_MS = 250

/**
 * Memory one live session is planned to take: Chromium's whole process tree. Measured idle on a
 * stand-in page (docs/benchmarks/wwebjs.md): about 205 MiB PSS per session when several run
 * (388 MiB for a lone one, which carries all of Chromium's shared pages). WhatsApp Web's own
 * heap and IndexedDB cache come on top and grow with chat history (others report 300-500 MB per
 * session), so we plan for 500 MiB.
 */
export const PLANNED_BYTES_PER_SESSION = 500 * 1024 * 1024
/** Kept free for Node itself, the OS and page cache. */
export const RESERVED_BYTES = 1024 * 1024 * 1024

/**
 * A default for MAX_SESSIONS: how many wwebjs sessions a machine with this much memory can hold,
 * keeping `RESERVED_BYTES` (or a tenth of the memory, if more) for Node and the OS. At least 1.
 *
 * @example
 * recommendedMaxSessions(os.totalmem()) // 8 GiB → 14, 16 GiB → 29
 */
export function recommendedMaxSessions(totalMemoryBytes: number): number {
  if (!Number.isFinite(totalMemoryBytes) || totalMemoryBytes <= 0) return 1
  const reserved = Math.max(RESERVED_BYTES, totalMemoryBytes / 10)
  return Math.max(1, Math.floor((totalMemoryBytes - reserved) / PLANNED_BYTES_PER_SESSION))
}

/** Creates the wwebjs engine. Run `runJanitor` (./janitor.ts) once before the first session. */
export function createWwebjsEngine(options: WwebjsEngineOptions): Engine {
  for (const name of ['destroyTimeoutMs', 'killTimeoutMs'] as const) {
    if (!(options[name] > 0)) throw new Error(`wwebjs engine: ${name} must be a positive number`)
  }
  const shared: SharedState = {
    options,
    clock: options.clock ?? systemClock,
    logger: (options.logger ?? silentLogger).child({ engine: 'wwebjs' }),
    profilesRoot: profilesRoot(options.dataDir),
    sessions: new Set(),
    teardownsByCampaign: new Map(),
  }
  return {
    name: 'wwebjs',
    createSession: (sessionOptions) => new WwebjsSession(shared, sessionOptions),
    async close() {
      await Promise.all([...shared.sessions].map((session) => session.stop()))
    },
  }
}

interface SharedState {
  options: WwebjsEngineOptions
  clock: Clock
  logger: Logger
  profilesRoot: string
  /** Sessions that have started and not finished tearing down. */
  sessions: Set<WwebjsSession>
  /** The teardown in progress per campaign: the next session of the campaign waits for it. */
  teardownsByCampaign: Map<string, Promise<EngineStopResult>>
}

/**
 * whatsapp-web.js's `LocalAuth`, plus a hook on the browser (right after it is launched) and
 * without its `logout()`, which would delete the profile under a running Chromium.
 * The d.ts declares the hooks as properties, so they are overridden as properties.
 */
class HookedLocalAuth extends LocalAuth {
  readonly #onBrowser: (browser: Browser, page: Page) => void

  constructor(
    options: { clientId: string; dataPath: string },
    onBrowser: (browser: Browser, page: Page) => void
  ) {
    super(options)
    this.#onBrowser = onBrowser
  }

  override afterBrowserInitialized = async (): Promise<void> => {
    await LocalAuth.prototype.afterBrowserInitialized.call(this)
    const { pupBrowser, pupPage } = (this as unknown as { client: WwebjsClient }).client
    if (pupBrowser && pupPage) this.#onBrowser(pupBrowser, pupPage)
  }

  override logout = async (): Promise<void> => {}
}

/** The internals of a Client we wrap to keep its loose promises caught. */
interface ClientInternals {
  inject(): Promise<void>
  destroy(): Promise<void>
  initWebVersionCache(): Promise<void>
}

class WwebjsSession implements EngineSession {
  readonly #shared: SharedState
  readonly #campaignId: string
  readonly #sessionId: string
  readonly #onEvent: (event: EngineEvent) => void
  readonly #log: Logger
  readonly #profileDir: string
  readonly #abortLaunch = new AbortController()

  #started = false
  /** Set when teardown begins (by `stop()` or after `terminated`): no event goes out after it. */
  #stopping = false
  #terminated = false
  #initializeSettled = false
  #authenticatedSent = false
  #readySent = false
  #wipeProfileAfterTeardown = false
  #client: WwebjsClient | undefined
  #browser: Browser | undefined
  #browserPid: number | undefined
  /** Every browser pid of this session seen, so its profile locks can be told from others'. */
  readonly #browserPids = new Set<number>()
  #teardown: Promise<EngineStopResult> | undefined

  constructor(shared: SharedState, { campaignId, sessionId, onEvent }: EngineSessionOptions) {
    this.#shared = shared
    this.#campaignId = campaignId
    this.#sessionId = sessionId
    this.#onEvent = onEvent
    this.#log = shared.logger.child({ campaignId, session: sessionTag(sessionId) })
    this.#profileDir = join(shared.profilesRoot, `session-${campaignId}`)
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

  stop(): Promise<EngineStopResult> {
    return this.#beginTeardown('stop requested')
  }

  async #run(): Promise<void> {
    // Never deliver an event from inside start(): everything below runs after it returned.
    await Promise.resolve()
    const previousTeardown = this.#shared.teardownsByCampaign.get(this.#campaignId)
    if (previousTeardown) {
      this.#log.debug('waiting for the previous session of this campaign to be torn down')
      await previousTeardown
    }
    if (this.#stopping) return
    // On a full disk Chromium runs on without saving the login, saying nothing: refuse instead.
    const unwritable = await whyNotWritable(this.#shared.profilesRoot)
    if (this.#stopping) return
    if (unwritable !== undefined) {
      this.#terminate('start_failed', `DATA_DIR: ${unwritable}`)
      return
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
    const { chromePath, extraChromiumArgs = [], whatsappLoadTimeoutMs } = this.#shared.options
    const args = [
      // Chromium refuses to run as root with its sandbox on; elsewhere the sandbox stays.
      ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
      // Containers give /dev/shm 64 MB, which Chromium outgrows; /tmp is used instead.
      '--disable-dev-shm-usage',
      ...markerArgs(this.#campaignId, this.#sessionId),
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
    this.#guardLoosePromises(client)
    return client
  }

  /**
   * whatsapp-web.js leaves some promises loose; a rejection of any of them would be unhandled
   * and, under Node's defaults, end the whole service. Each is reached through a method looked up
   * on the instance, so replacing the method there catches it:
   *
   * - `inject()`, called again from an async `framenavigated` listener;
   * - `destroy()`, called without `await` on a bad WhatsApp state;
   * - `initWebVersionCache()`, which (with no cache) adds an async `response` listener that
   *   reads the page's HTML, and rejects with "Target closed" when the browser goes away while
   *   the page loads. That HTML only feeds the 'local' cache, which we do not use, so the method
   *   becomes a no-op.
   */
  #guardLoosePromises(client: WwebjsClient): void {
    const internals = client as unknown as ClientInternals
    internals.initWebVersionCache = async () => {}
    const inject = internals.inject.bind(client)
    const destroy = internals.destroy.bind(client)
    internals.inject = async () => {
      try {
        await inject()
      } catch (error) {
        // During initialize() the error must reach initialize()'s caller: that is us.
        if (!this.#initializeSettled) throw error
        if (this.#stopping) return
        this.#log.warn({ err: error }, 'WhatsApp Web could not be re-injected after a navigation')
        this.#terminate(
          'engine_error',
          `re-injection after a navigation failed: ${describeThrown(error)}`
        )
      }
    }
    internals.destroy = async () => {
      try {
        await destroy()
      } catch (error) {
        // The browser is killed by our teardown anyway.
        this.#log.debug({ err: error }, 'whatsapp-web.js destroy() failed')
      }
    }
  }

  #listen(client: WwebjsClient): void {
    client.on('qr', (qr: string) => {
      if (this.#readySent) {
        // WhatsApp shows a QR again only when this device was unlinked.
        this.#terminate('logged_out', 'a new QR code appeared after ready: the device was unlinked')
        return
      }
      this.#emit({ type: 'qr', qr })
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

  #beginTeardown(reason: string): Promise<EngineStopResult> {
    if (!this.#teardown) {
      this.#stopping = true
      const teardown = this.#tearDown(reason)
      this.#teardown = teardown
      const { teardownsByCampaign, sessions } = this.#shared
      teardownsByCampaign.set(this.#campaignId, teardown)
      void teardown.then(() => {
        if (teardownsByCampaign.get(this.#campaignId) === teardown) {
          teardownsByCampaign.delete(this.#campaignId)
        }
        sessions.delete(this)
      })
    }
    return this.#teardown
  }

  /** Never rejects; settles within destroyTimeoutMs + killTimeoutMs (plus a few polls). */
  async #tearDown(reason: string): Promise<EngineStopResult> {
    const { clock, options } = this.#shared
    const startedAt = clock.now()
    let forced = false
    this.#log.debug({ reason }, 'tearing down')
    try {
      if (this.#client && !this.#browser) {
        // Still launching: destroy() would return at once and the browser would launch anyway.
        // Aborting makes puppeteer SIGKILL the spawned group, or refuse to spawn one.
        forced = true
        this.#abortLaunch.abort()
      } else if (this.#client) {
        const closed = await settlesWithin(this.#client.destroy(), options.destroyTimeoutMs, clock)
        if (!closed) {
          forced = true
          this.#log.warn(
            { destroyTimeoutMs: options.destroyTimeoutMs },
            'destroy() did not finish in time; killing Chromium'
          )
        }
      }
      this.#abortLaunch.abort()
      const survivors = await this.#killWhatIsLeft()
      if (survivors.length > 0) {
        this.#log.error(
          { pids: survivors.map((survivor) => survivor.pid), killTimeoutMs: options.killTimeoutMs },
          'Chromium processes survived SIGKILL; the profile keeps its locks'
        )
      } else {
        this.#releaseProfile()
      }
    } catch (error) {
      this.#log.error({ err: error }, 'teardown failed')
    }
    this.#client?.removeAllListeners()
    const durationMs = clock.now() - startedAt
    this.#log.info({ forced, durationMs }, 'engine session torn down')
    return { forced, durationMs }
  }

  /** SIGKILLs every process of the session and waits until none is left, or killTimeoutMs. */
  async #killWhatIsLeft(): Promise<ProcessInfo[]> {
    const groups = this.#browserPid === undefined ? [] : [this.#browserPid]
    const find = () => findSessionProcesses(this.#sessionId, groups)
    const kill = (processes: ProcessInfo[]) => {
      for (const leftover of processes) {
        // A browser we never heard of (its launch was aborted) may have locked the profile.
        if (leftover.argv.includes(`${SESSION_MARKER}${this.#sessionId}`)) {
          this.#browserPids.add(leftover.pid)
        }
        if (leftover.pgid === leftover.pid || groups.includes(leftover.pgid)) {
          killProcessGroup(leftover.pgid)
        }
        killProcess(leftover.pid)
      }
    }
    if (this.#browserPid !== undefined) killProcessGroup(this.#browserPid)
    kill(find())
    return waitUntilGone({
      find,
      timeoutMs: this.#shared.options.killTimeoutMs,
      clock: this.#shared.clock,
      onStillThere: kill,
    })
  }

  /** With no process of the session left: drop the locks a killed Chromium leaves behind. */
  #releaseProfile(): void {
    if (!this.#client) return
    const removed = removeProfileLocks(this.#profileDir, [...this.#browserPids])
    if (removed > 0) this.#log.debug({ removed }, 'removed stale profile locks')
    if (this.#wipeProfileAfterTeardown) {
      rmSync(this.#profileDir, { recursive: true, force: true })
      this.#log.info('logged out: removed the saved WhatsApp auth of the campaign')
    }
  }
}

/** WhatsApp's reasons for `disconnected`, as the contract's termination kinds. */
export function terminationKindForDisconnect(reason: string): EngineTerminationKind {
  switch (reason) {
    // The phone unlinked the device: 'LOGOUT' from a post-logout navigation, UNPAIRED(_IDLE)
    // from a state change; which one arrives depends on which WhatsApp Web event fires first.
    case 'LOGOUT':
    case 'UNPAIRED':
    case 'UNPAIRED_IDLE':
      return 'logged_out'
    // CONFLICT (another WhatsApp Web took over), TOS_BLOCK, SMB_TOS_BLOCK, PROXYBLOCK,
    // DEPRECATED_VERSION, UNLAUNCHED, 'Max qrcode retries reached' and anything new.
    default:
      return 'engine_error'
  }
}

/** Resolves true if `promise` settles (either way) within `ms`, else false. */
async function settlesWithin(
  promise: Promise<unknown>,
  ms: number,
  clock: Clock
): Promise<boolean> {
  let timer: unknown
  const timedOut = new Promise<false>((resolve) => {
    timer = clock.setTimeout(() => resolve(false), ms)
  })
  const settled = promise.then(
    () => true as const,
    () => true as const
  )
  try {
    return await Promise.race([settled, timedOut])
  } finally {
    clock.clearTimeout(timer)
  }
}

/**
 * Any thrown value as one line for an event's `detail`. Errors, and error-like objects, by their
 * message: puppeteer rethrows the WebSocket's `ErrorEvent` (not an Error) when Chromium dies while
 * it connects, which `String()` turned into "[object Object]". Anything else as `util.inspect`
 * shows it.
 *
 * @example
 * describeThrown(new Error('Target closed')) // 'Target closed'
 * describeThrown({ code: 'ECONNRESET' })      // "{ code: 'ECONNRESET' }"
 */
export function describeThrown(thrown: unknown): string {
  const text = messageOf(thrown) ?? inspect(thrown, { depth: 1, breakLength: Infinity })
  const firstLine = text.split('\n', 1)[0] ?? ''
  return firstLine.length > 300 ? `${firstLine.slice(0, 297)}...` : firstLine
}

function messageOf(thrown: unknown): string | undefined {
  if (thrown instanceof Error) return thrown.message || thrown.name
  if (typeof thrown === 'string') return thrown || undefined
  if (typeof thrown !== 'object' || thrown === null) return undefined
  // A DOM-style ErrorEvent carries `message` and the Error itself as `error`.
  const { message, error } = thrown as { message?: unknown; error?: unknown }
  if (typeof message === 'string' && message !== '') return message
  return error instanceof Error ? messageOf(error) : undefined
}
