/**
 * Where a webhook may be sent: only `http`/`https` URLs whose host resolves to public addresses.
 * A receiver URL is chosen by a campaign's owner, so without this rule the service could be made
 * to call its own admin ports, a cloud metadata endpoint or the private network behind it.
 *
 * The rule is checked when an endpoint is set and again at every connection: `safeLookup` is the
 * resolver of the sending agent, so the address that was checked is the one connected to (a DNS
 * answer that changes between the check and the connection, "DNS rebinding", gains nothing).
 *
 * @module
 */
import { lookup as dnsLookup } from 'node:dns/promises'
import { BlockList, isIP, type LookupFunction } from 'node:net'

/** Resolves a host name to its addresses (injectable for tests). */
export type Resolve = (hostname: string) => Promise<Array<{ address: string; family: number }>>

export const systemResolve: Resolve = (hostname) => dnsLookup(hostname, { all: true })

/** A URL the policy refuses; the message says why and what to do. */
export class WebhookUrlError extends Error {
  override name = 'WebhookUrlError'
}

/**
 * Addresses that are not on the public internet (IANA special-purpose registries). IPv4-mapped
 * IPv6 addresses (`::ffff:127.0.0.1`) are matched against the IPv4 rules by `BlockList` itself.
 */
const NOT_PUBLIC = new BlockList()
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local (cloud metadata endpoints live here)
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and the broadcast address
] as const) {
  NOT_PUBLIC.addSubnet(network, prefix, 'ipv4')
}
for (const [network, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['64:ff9b::', 96], // NAT64 (reaches IPv4 addresses, private ones included)
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard
  ['2001::', 23], // IETF protocol assignments (Teredo among them)
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4 (reaches IPv4 addresses)
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  NOT_PUBLIC.addSubnet(network, prefix, 'ipv6')
}

/** True for an address on the public internet; false for loopback, private, link-local and the like. */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address)
  if (family === 0) return false
  return !NOT_PUBLIC.check(address, family === 6 ? 'ipv6' : 'ipv4')
}

export interface AddressPolicy {
  /** `WEBHOOK_ALLOW_PRIVATE`: allow loopback and private addresses (tests, closed networks). */
  allowPrivate: boolean
  resolve?: Resolve
}

/**
 * Parses and checks a receiver URL: `http` or `https`, no credentials in it, a host that resolves
 * only to public addresses (unless `allowPrivate`). Resolves with the parsed URL; rejects with a
 * `WebhookUrlError`.
 */
export async function checkWebhookUrl(
  url: string,
  { allowPrivate, resolve = systemResolve }: AddressPolicy
): Promise<URL> {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new WebhookUrlError('the webhook URL is not a valid absolute URL')
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new WebhookUrlError(
      `the webhook URL must be http:// or https:// (it is ${parsed.protocol}//)`
    )
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw new WebhookUrlError('the webhook URL must not carry a user name or password')
  }
  if (!allowPrivate) await resolvePublic(hostOf(parsed), resolve)
  return parsed
}

/** The URL's host as an address or a name (without the brackets of an IPv6 literal). */
export function hostOf(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
}

/**
 * The host's addresses, all of them public; rejects with a `WebhookUrlError` if any is not (a
 * name with one private address among public ones is refused: which one is connected to is not
 * ours to choose).
 */
export async function resolvePublic(
  host: string,
  resolve: Resolve
): Promise<Array<{ address: string; family: number }>> {
  const literal = isIP(host)
  const addresses =
    literal !== 0 ? [{ address: host, family: literal }] : await resolveName(host, resolve)
  if (addresses.length === 0) throw new WebhookUrlError(`the webhook host ${host} has no address`)
  const refused = addresses.find(({ address }) => !isPublicAddress(address))
  if (refused) {
    throw new WebhookUrlError(
      `the webhook host ${host} resolves to ${refused.address}, which is not a public address (loopback, private and link-local addresses are refused unless WEBHOOK_ALLOW_PRIVATE=true)`
    )
  }
  return addresses
}

async function resolveName(host: string, resolve: Resolve) {
  try {
    return await resolve(host)
  } catch (error) {
    const code = (error as { code?: string }).code
    throw new WebhookUrlError(
      `the webhook host ${host} does not resolve${code ? ` (${code})` : ''}`
    )
  }
}

/**
 * A `lookup` for `http.request`/an agent: resolves, refuses non-public addresses, and hands the
 * checked addresses to the connection (which connects to them, not to a second answer).
 */
export function safeLookup({
  allowPrivate,
  resolve = systemResolve,
}: AddressPolicy): LookupFunction {
  return (hostname, options, callback) => {
    const lookedUp = allowPrivate
      ? resolveName(hostname, resolve)
      : resolvePublic(hostname, resolve)
    lookedUp.then(
      (addresses) => {
        const wanted = options.family === 4 || options.family === 6 ? options.family : undefined
        const usable = wanted ? addresses.filter((entry) => entry.family === wanted) : addresses
        const first = usable[0]
        if (!first) {
          callback(
            new WebhookUrlError(`the webhook host ${hostname} has no IPv${wanted} address`),
            '',
            0
          )
        } else if (options.all) {
          ;(callback as unknown as (error: null, all: typeof usable) => void)(null, usable)
        } else {
          callback(null, first.address, first.family)
        }
      },
      (error: unknown) => callback(error as NodeJS.ErrnoException, '', 0)
    )
  }
}
