/**
 * A page that looks to whatsapp-web.js 1.34.7 like WhatsApp Web waiting for a scan: just enough
 * of `window.Debug` and `window.require(...)` for its `inject()` to run to the end and emit `qr`.
 * It mirrors the modules `inject()` and `ExposeAuthStore` touch (node_modules/whatsapp-web.js
 * src/Client.js and src/util/Injected/AuthStore/AuthStore.js); if an update of whatsapp-web.js
 * touches others, the QR tests fail with a clear "no qr" and this file needs the new modules.
 *
 * The page reports its progress by requesting `/signal/<name>`: `injected` once `inject()` has
 * subscribed to everything it needs (after that, `initialize()` has resolved), and
 * `helpers-injected` when whatsapp-web.js, on its way to `ready`, has injected its helpers. The test drives the "phone" through server-sent events on
 * `/commands`:
 * - `rotate`: WhatsApp rotates the QR (a new `ref`);
 * - `synced`: the phone scanned and the app state synced. whatsapp-web.js emits `authenticated`,
 *   then injects its helpers and fails on this fake before `ready`. On a second `synced` (sent
 *   after `helpers-injected`) its helpers are already there, so it emits `authenticated` again
 *   and `ready`.
 * - `logout`: the phone unlinks the device (WhatsApp navigates to `?post_logout=1`).
 * - `state:<STATE>`: WhatsApp's connection state changes (e.g. `state:TIMEOUT`, the page's socket
 *   to WhatsApp lost with no `disconnected` event: whatsapp-web.js accepts TIMEOUT silently).
 *   After a scan the state is `CONNECTED`, which is what `client.getState()` reads.
 *
 * A page served as linked (`LINKED`, the stand-in's `rememberDevice()`: WhatsApp knows this
 * device, as after a saved login) starts `CONNECTED` with no QR, and syncs by itself twice (see
 * `synced`), so whatsapp-web.js comes to `ready` without a phone.
 *
 * Linking with a phone number (whatsapp-web.js's `pairWithPhoneNumber`, `requestPairingCode()`):
 * `WAWebAltDeviceLinkingApi` gives a new code `FAKE0001`, `FAKE0002`, … at each
 * `startAltLinkingFlow(phoneNumber, showNotification)`, and reports it as the signal
 * `pairing-code` with `?phone=<the number>`. The person typing the code on the phone is `synced`.
 *
 * whatsapp-web.js's own `logout()` (an unlink from our side) calls `Socket.logout()` in the page
 * and waits for it: the page tells WhatsApp's server (here `/signal/logged-out`, which a test may
 * leave unanswered to hang the logout), then loads again as a logged-out page (`?post_logout=1`).
 */
const FAKE_WHATSAPP_SCRIPT = `
function emitter(target) {
  const listeners = {}
  target.on = (events, fn) => {
    for (const event of events.split(' ')) (listeners[event] ??= []).push(fn)
  }
  target.off = (event, fn) => {
    listeners[event] = (listeners[event] || []).filter((other) => other !== fn)
  }
  target.emit = (event, ...args) => {
    for (const fn of listeners[event] || []) fn(...args)
  }
  return target
}
const Socket = emitter({ state: LINKED ? 'CONNECTED' : 'UNPAIRED', hasSynced: false })
function sync() {
  Socket.state = 'CONNECTED'
  Socket.hasSynced = true
  Socket.emit('change:hasSynced')
}
Socket.logout = async () => {
  await fetch('/signal/logged-out')
  setTimeout(() => {
    location.href = '/?post_logout=1'
  })
}
const Conn = emitter({ ref: 'fake-ref-1' })
// Called by whatsapp-web.js after it injected its helpers, on the way to 'ready'. The stand-in
// has no account to describe, so it fails here, after telling the test.
let serialized = 0
Conn.serialize = () => {
  fetch('/signal/helpers-injected')
  // A linked page syncs again by itself, as the phone would be told to in a test.
  if (LINKED && ++serialized === 1) setTimeout(sync, 50)
  throw new Error('the stand-in has no account')
}
const Cmd = emitter({})
// whatsapp-web.js subscribes to 'logout' last in inject(): tell the test that inject() is done.
const subscribe = Cmd.on
Cmd.on = (events, fn) => {
  subscribe(events, fn)
  if (events === 'logout') {
    fetch('/signal/injected')
    if (LINKED) setTimeout(sync, 50)
  }
}
const modules = {
  WAWebSocketModel: { Socket },
  WAWebCmd: { Cmd },
  WAWebConnModel: { Conn },
  WAWebOfflineHandler: { OfflineMessageHandler: { getOfflineDeliveryProgress: () => 100 } },
  WAWebAltDeviceLinkingApi: {
    setPairingType: (type) => {
      if (type !== 'ALT_DEVICE_LINKING') throw new Error('unexpected pairing type ' + type)
    },
    initializeAltDeviceLinking: async () => {},
    startAltLinkingFlow: async (phoneNumber) => {
      pairingCodes += 1
      await fetch('/signal/pairing-code?phone=' + encodeURIComponent(phoneNumber))
      return 'FAKE' + String(pairingCodes).padStart(4, '0')
    },
  },
  WABase64: { encodeB64: (value) => btoa(String(value)) },
  WAWebCompanionRegClientUtils: { DEVICE_PLATFORM: 'Chrome' },
  WAWebAdvSignatureApi: {},
  WAWebUserPrefsInfoStore: {
    waNoiseInfo: { get: async () => ({ staticKeyPair: { pubKey: 'static-key' } }) },
  },
  WAWebSignalStoreApi: {
    waSignalStore: {
      getRegistrationInfo: async () => ({ identityKeyPair: { pubKey: 'identity-key' } }),
    },
  },
  WAWebUserPrefsMultiDevice: { getADVSecretKey: () => 'adv-secret' },
}
window.require = (name) => modules[name]
window.Debug = { VERSION: '2.3000.0-fake' }
let rotations = 1
let pairingCodes = 0
window.addEventListener('load', () => {
  new EventSource('/commands').onmessage = ({ data }) => {
    if (data === 'rotate') {
      rotations += 1
      Conn.ref = 'fake-ref-' + rotations
      Conn.emit('change:ref', Conn, Conn.ref)
    } else if (data === 'synced') {
      sync()
    } else if (data.startsWith('state:')) {
      Socket.state = data.slice('state:'.length)
      Socket.emit('change:state', Socket, Socket.state)
    } else if (data === 'logout') {
      location.href = '/?post_logout=1'
    }
  }
})
`

/** The page; `linked` as WhatsApp serves it to a device it knows (see above). */
export function fakeWhatsAppPage(linked = false): string {
  return `<!doctype html><title>WhatsApp (stand-in)</title><script>const LINKED = ${linked}\n${FAKE_WHATSAPP_SCRIPT}</script><p>scan me</p>`
}

export type PhoneCommand = 'rotate' | 'synced' | 'logout' | `state:${string}`
export type PageSignal = 'injected' | 'helpers-injected' | 'logged-out' | 'pairing-code'
