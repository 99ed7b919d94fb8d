/**
 * A campaign's proxy (`proxy` in a start request or `PUT …/settings`, `WA_PROXY` for the whole
 * service): parsed and checked once, then carried as `ProxySettings`, whose credentials are kept
 * apart from the address so that nothing that shows or logs a proxy can show them.
 *
 * @module
 */

/** A proxy as the engine uses it. */
export interface ProxySettings {
  /** `scheme://host:port`, without credentials: Chromium's `--proxy-server`, and what is shown. */
  server: string
  /** Given to the proxy when it asks (HTTP `407`): never logged, never answered by the API. */
  credentials?: { username: string; password: string }
}

const SCHEMES: Record<string, number> = { 'http:': 80, 'https:': 443, 'socks5:': 1080 }

/** What a valid proxy looks like, for error messages. */
export const PROXY_FORMAT =
  'http://, https:// or socks5:// with a host, an optional port and optional credentials (http://user:password@proxy.example:3128)'

/**
 * Parses a proxy URL; the reason says what is wrong, without repeating the URL (it may hold a
 * password).
 *
 * @example
 * parseProxy('http://user:secret@proxy.example:3128')
 * // { ok: true, proxy: { server: 'http://proxy.example:3128', credentials: { username: 'user', password: 'secret' } } }
 */
export function parseProxy(
  text: string
): { ok: true; proxy: ProxySettings } | { ok: false; reason: string } {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return { ok: false, reason: `must be a URL: ${PROXY_FORMAT}` }
  }
  const defaultPort = SCHEMES[url.protocol]
  if (defaultPort === undefined) {
    return { ok: false, reason: `must use http://, https:// or socks5:// (${PROXY_FORMAT})` }
  }
  if (!url.hostname) return { ok: false, reason: `needs a host (${PROXY_FORMAT})` }
  if ((url.pathname !== '' && url.pathname !== '/') || url.search || url.hash) {
    return {
      ok: false,
      reason: 'must be only scheme, credentials, host and port (no path or query)',
    }
  }
  const hasCredentials = url.username !== '' || url.password !== ''
  if (hasCredentials && url.protocol === 'socks5:') {
    // Chromium cannot authenticate to a SOCKS5 proxy at all: the session would never connect.
    return {
      ok: false,
      reason:
        'cannot carry credentials with socks5:// (Chromium does not authenticate to SOCKS5 proxies): use an http:// or https:// proxy, or a SOCKS5 proxy that needs none',
    }
  }
  const server = `${url.protocol}//${url.hostname}:${url.port || defaultPort}`
  if (!hasCredentials) return { ok: true, proxy: { server } }
  let username: string
  let password: string
  try {
    username = decodeURIComponent(url.username)
    password = decodeURIComponent(url.password)
  } catch {
    return { ok: false, reason: 'has credentials that are not validly percent-encoded' }
  }
  return { ok: true, proxy: { server, credentials: { username, password } } }
}

/** What may be shown of a proxy: its address, and whether it carries credentials. */
export interface ProxyView {
  server: string
  hasCredentials: boolean
}

export function viewOfProxy(proxy: ProxySettings | null): ProxyView | null {
  return proxy ? { server: proxy.server, hasCredentials: proxy.credentials !== undefined } : null
}
