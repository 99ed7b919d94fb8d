/**
 * What a person is told about an engine failure: the engine's own words with anything secret
 * removed, and, when the cause is recognisable, a hint they can act on ("this machine cannot
 * reach web.whatsapp.com (DNS)").
 *
 * The engine's `detail` is written for logs: Chromium's network error codes, puppeteer's launch
 * errors, a proxy URL that may carry a password. It reaches the API (`GET …/connection`'s
 * `detail`, a session's history) and WebSocket subscribers only through `explainEngineFailure`.
 *
 * @module
 */
/** A public detail never grows past this (the engine's first line is already short). */
export const MAX_DETAIL_LENGTH = 400

const REDACTED = '[redacted]'

interface Recognised {
  /** Matches the engine's detail (case-sensitive: these are codes, not prose). */
  pattern: RegExp
  hint: (detail: string) => string
}

/** The host a Chromium network error names (`net::ERR_… at https://host/`), else WhatsApp's. */
function hostOf(detail: string): string {
  const match = /\bat (?:https?|wss?):\/\/([^/\s:?#]+)/.exec(detail)
  return match?.[1] ?? 'web.whatsapp.com'
}

/**
 * The causes recognised, first match wins. Each pattern is a string Chromium, puppeteer or
 * whatsapp-web.js really produces (the tests hold a real example of each).
 */
const RECOGNISED: Recognised[] = [
  {
    pattern: /ERR_NAME_NOT_RESOLVED|ERR_NAME_RESOLUTION_FAILED|getaddrinfo (?:ENOTFOUND|EAI_AGAIN)/,
    hint: (detail) => `this machine cannot reach ${hostOf(detail)} (DNS)`,
  },
  {
    pattern: /ERR_PROXY_CONNECTION_FAILED|ERR_NO_SUPPORTED_PROXIES|ERR_PROXY_CERTIFICATE_INVALID/,
    hint: () => 'the proxy cannot be reached (check the proxy settings)',
  },
  {
    pattern: /ERR_TUNNEL_CONNECTION_FAILED|ERR_PROXY_AUTH_REQUESTED|ERR_PROXY_AUTH_UNSUPPORTED/,
    hint: (detail) => `a proxy refused the connection to ${hostOf(detail)}`,
  },
  {
    pattern:
      /ERR_INTERNET_DISCONNECTED|ERR_ADDRESS_UNREACHABLE|ERR_NETWORK_(?:CHANGED|ACCESS_DENIED)|ERR_CONNECTION_(?:REFUSED|RESET|CLOSED|TIMED_OUT|FAILED)|ERR_TIMED_OUT/,
    hint: (detail) => `this machine cannot reach ${hostOf(detail)} (network)`,
  },
  {
    pattern: /ERR_CERT_|ERR_SSL_|ERR_BAD_SSL_CLIENT_AUTH_CERT/,
    hint: (detail) =>
      `the TLS certificate of ${hostOf(detail)} was refused (a proxy that inspects HTTPS?)`,
  },
  {
    pattern: /killed by SIG(?:KILL|SEGV|BUS|ABRT)|signal SIG(?:KILL|SEGV|BUS|ABRT)/,
    hint: () => 'Chromium was killed (out of memory?)',
  },
  {
    // The browser went away and the engine could not tell how (no exit signal yet, or only the
    // broken connection): most often it was killed from outside.
    pattern: /Chromium exited unexpectedly|Protocol error.*(?:Target|Connection|Session) closed/,
    hint: () => 'Chromium stopped without warning (killed, or out of memory?)',
  },
  {
    pattern: /Browser was not found at|Failed to launch the browser process.*(?:ENOENT|EACCES)/,
    hint: () => 'Chromium could not be started: check CHROME_PATH',
  },
  {
    pattern: /Failed to launch the browser process/,
    hint: () => 'Chromium could not be started (see the service log for its output)',
  },
  {
    pattern: /The browser is already running|profile appears to be in use/,
    hint: () => 'another Chromium holds this campaign’s profile (a session left behind?)',
  },
  {
    pattern: /\bauth timeout\b/,
    hint: () => 'web.whatsapp.com loaded, but WhatsApp Web never started in the page',
  },
  {
    pattern: /page crashed/,
    hint: () => 'the WhatsApp page crashed in Chromium (out of memory?)',
  },
]

/**
 * A hint a person can act on, or null when the cause is not recognised.
 *
 * @example
 * failureHint('initialize() failed: net::ERR_NAME_NOT_RESOLVED at https://web.whatsapp.com/')
 * // 'this machine cannot reach web.whatsapp.com (DNS)'
 */
export function failureHint(detail: string): string | null {
  for (const { pattern, hint } of RECOGNISED) {
    if (pattern.test(detail)) return hint(detail)
  }
  return null
}

/**
 * The text with credentials and tokens replaced by `[redacted]`: a URL's user and password,
 * secret-looking query or `key=value` parameters, `Bearer`/`Basic` credentials, JWTs, and any
 * other long run of token characters.
 *
 * @example
 * redactSecrets('proxy http://bob:hunter2@10.0.0.1:3128 refused')
 * // 'proxy http://[redacted]@10.0.0.1:3128 refused'
 */
export function redactSecrets(text: string): string {
  return (
    text
      // scheme://user:password@host → scheme://[redacted]@host
      .replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@]+@/gi, `$1${REDACTED}@`)
      // Authorization schemes and their credentials.
      .replace(/\b(Bearer|Basic)\s+[^\s,;]+/gi, `$1 ${REDACTED}`)
      // token=…, api_key: …, "password":"…" (in a query string, a header or JSON).
      .replace(
        /\b((?:access_|refresh_|id_)?token|api[_-]?key|key|secret|client_secret|password|passwd|pwd|auth|authorization|sig|signature|jwt|session_?key)("?\s*[=:]\s*"?)([^\s&"',;]+)/gi,
        `$1$2${REDACTED}`
      )
      // A JWT anywhere.
      .replace(/\beyJ[\w-]*\.[\w-]+\.[\w-]*/g, REDACTED)
      // Any other long run of token characters with a digit in it (API keys, hex secrets).
      .replace(/[A-Za-z0-9_\-+/]{32,}={0,2}/g, (run) =>
        /\d/.test(run) && /[A-Za-z]/.test(run) && !run.includes('/') ? REDACTED : run
      )
  )
}

/**
 * The engine's detail as people see it: secrets removed, the recognised cause first.
 *
 * @example
 * explainEngineFailure('initialize() failed: net::ERR_PROXY_CONNECTION_FAILED at https://web.whatsapp.com/')
 * // 'The proxy cannot be reached (check the proxy settings) — initialize() failed: net::ERR_PROXY_…'
 */
export function explainEngineFailure(detail: string): string {
  const safe = redactSecrets(detail.trim())
  const hint = failureHint(safe)
  const text = hint ? `${capitalise(hint)} — ${safe}` : safe
  return text.length > MAX_DETAIL_LENGTH ? `${text.slice(0, MAX_DETAIL_LENGTH - 1)}…` : text
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1)
}
