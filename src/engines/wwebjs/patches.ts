/**
 * The patches whatsapp-web.js 1.34 needs to be supervised: a hook on its browser, no profile
 * deletion under a running Chromium, and its loose promises kept caught.
 *
 * @module
 */
import wweb from 'whatsapp-web.js'

// whatsapp-web.js is CommonJS: only the default import carries every class.
const { LocalAuth } = wweb
export type WwebjsClient = InstanceType<typeof wweb.Client>
export type Browser = NonNullable<WwebjsClient['pupBrowser']>
export type Page = NonNullable<WwebjsClient['pupPage']>

/**
 * whatsapp-web.js's `LocalAuth`, plus a hook on the browser (right after it is launched) and
 * without its `logout()`, which would delete the profile under a running Chromium.
 * The d.ts declares the hooks as properties, so they are overridden as properties.
 */
export class HookedLocalAuth extends LocalAuth {
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

export interface LoosePromiseHooks {
  /** True while a re-injection failure must reach `initialize()`'s caller. */
  rethrowInjectFailure: () => boolean
  onInjectFailed: (error: unknown) => void
  onDestroyFailed: (error: unknown) => void
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
export function guardLoosePromises(client: WwebjsClient, hooks: LoosePromiseHooks): void {
  const internals = client as unknown as ClientInternals
  internals.initWebVersionCache = async () => {}
  const inject = internals.inject.bind(client)
  const destroy = internals.destroy.bind(client)
  internals.inject = async () => {
    try {
      await inject()
    } catch (error) {
      if (hooks.rethrowInjectFailure()) throw error
      hooks.onInjectFailed(error)
    }
  }
  internals.destroy = async () => {
    try {
      await destroy()
    } catch (error) {
      hooks.onDestroyFailed(error)
    }
  }
}
