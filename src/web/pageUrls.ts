/**
 * Where the pages are, for the start-up log: the service's listening address as a browser should
 * open it (a wildcard address such as `0.0.0.0` becomes `localhost`).
 *
 * @module
 */

export interface PageUrls {
  /** The dashboard; open it with `#token=<JWT>` appended to sign in. */
  dashboard: string
  /** The inspector, or null when `INSPECT` is off. */
  inspector: string | null
}

const WILDCARD_HOSTS = new Set(['0.0.0.0', '[::]', '::', ''])

/**
 * The pages' URLs for a service listening at `listeningUrl`.
 *
 * @example
 * pageUrls('http://0.0.0.0:3000', { inspect: true })
 * // { dashboard: 'http://localhost:3000/', inspector: 'http://localhost:3000/inspect' }
 */
export function pageUrls(listeningUrl: string, { inspect }: { inspect: boolean }): PageUrls {
  const url = new URL(listeningUrl)
  if (WILDCARD_HOSTS.has(url.hostname)) url.hostname = 'localhost'
  const origin = url.origin
  return { dashboard: `${origin}/`, inspector: inspect ? `${origin}/inspect` : null }
}
