/**
 * What both pages share: the token (taken from the URL fragment, kept in this tab's
 * sessionStorage), calls to the JSON API with `Authorization: Bearer`, a WebSocket that
 * reconnects, and the words used for statuses and reasons.
 */

const TOKEN_KEY = 'qrvisor.token'

/**
 * The token from `#token=…` (then removed from the address bar, so it is not shared or
 * screenshotted by accident), else the one this tab already had, else null.
 */
export function takeToken() {
  const fromFragment = new URLSearchParams(location.hash.slice(1)).get('token')
  if (fromFragment) {
    sessionStorage.setItem(TOKEN_KEY, fromFragment)
    history.replaceState(null, '', location.pathname + location.search)
    return fromFragment
  }
  return sessionStorage.getItem(TOKEN_KEY)
}

export function saveToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token)
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY)
}

/** The token's claims, for display only (the server verifies; the page just reads). */
export function readClaims(token) {
  try {
    const payload = token.split('.')[1] ?? ''
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'))
    const claims = JSON.parse(json)
    const roles = Array.isArray(claims.roles) ? claims.roles : []
    return { sub: String(claims.sub ?? '?'), admin: roles.includes('admin'), exp: claims.exp }
  } catch {
    return { sub: '?', admin: false, exp: undefined }
  }
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

/** Calls the JSON API; resolves with the parsed body, rejects with an ApiError. */
export function createApi(token) {
  async function call(method, path, body) {
    const headers = { Authorization: `Bearer ${token}` }
    if (body !== undefined) headers['Content-Type'] = 'application/json'
    let response
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      })
    } catch {
      throw new ApiError(0, 'network', 'The service cannot be reached. Is it running?')
    }
    const data = await response.json().catch(() => null)
    if (!response.ok) {
      const error = data && data.error
      throw new ApiError(
        response.status,
        (error && error.code) || 'http_' + response.status,
        (error && error.message) || `The service answered ${response.status}.`
      )
    }
    return data
  }
  return {
    get: (path) => call('GET', path),
    post: (path, body) => call('POST', path, body),
    put: (path, body) => call('PUT', path, body),
  }
}

/** `ws(s)://<this host><path>?token=…` */
export function socketUrl(path, token) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${scheme}//${location.host}${path}?token=${encodeURIComponent(token)}`
}

/**
 * A WebSocket that reconnects with backoff (0.5 s doubling to 10 s) and reports its state.
 * `onOpen` runs on every (re)connection, so subscriptions can be renewed there.
 */
export function connectSocket(url, { onOpen, onMessage, onState }) {
  let socket
  let attempt = 0
  let closed = false
  let retryTimer

  function open() {
    onState('connecting')
    socket = new WebSocket(url)
    socket.onopen = () => {
      attempt = 0
      onState('open')
      onOpen(send)
    }
    socket.onmessage = (event) => {
      let message
      try {
        message = JSON.parse(event.data)
      } catch {
        return
      }
      onMessage(message)
    }
    socket.onclose = (event) => {
      if (closed) return
      onState('closed', event)
      // 1008 and 4xxx mean the server refused us: retrying would not help.
      if (event.code === 1008 || (event.code >= 4000 && event.code < 5000)) return
      const wait = Math.min(10_000, 500 * 2 ** attempt++)
      retryTimer = setTimeout(open, wait)
    }
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message))
  }

  open()
  return {
    send,
    close() {
      closed = true
      clearTimeout(retryTimer)
      socket.close(1000)
    },
  }
}

export const STATUS_LABELS = {
  idle: 'Not linked',
  initializing: 'Starting WhatsApp…',
  awaitingScan: 'Waiting for the scan',
  authenticating: 'Scanned, linking…',
  ready: 'Linked',
  timedOut: 'Timed out',
  failed: 'Failed',
  cleaning: 'Cleaning up…',
  cleaned: 'Ended',
}

export const REASON_TEXTS = {
  init_timeout: 'WhatsApp did not start in time.',
  scan_timeout: 'The QR code was not scanned in time.',
  auth_timeout: 'The phone scanned the code, but WhatsApp did not finish linking in time.',
  engine_failed: 'The WhatsApp engine failed.',
  logged_out: 'The phone logged this device out.',
  unresponsive: 'It looked linked, but WhatsApp stopped answering.',
  node_lost: 'The node running this session was lost; start it again.',
  cleanup_requested: 'The session was cleaned up.',
  unlinked: 'WhatsApp was unlinked and its login deleted; linking again needs a new QR scan.',
  replaced: 'A new session replaced this one.',
  shutdown: 'The service was shut down.',
}

export function statusLabel(status) {
  return STATUS_LABELS[status] ?? status
}

export function reasonText(reason) {
  return REASON_TEXTS[reason] ?? reason ?? ''
}

/** `12:03:04` in the viewer's time zone. */
export function clockTime(at) {
  if (at === null || at === undefined) return '–'
  const date = new Date(at)
  if (Number.isNaN(date.getTime())) return '–'
  return date.toLocaleTimeString([], {
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  })
}

/** Builds an element: `h('button', { class: 'small', onclick }, 'Scan')`. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value)
    else if (name === 'class') element.className = value
    else element.setAttribute(name, value === true ? '' : String(value))
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue
    element.append(child instanceof Node ? child : String(child))
  }
  return element
}
