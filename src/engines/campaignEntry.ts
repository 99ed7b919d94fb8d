/**
 * Where an engine keeps a campaign's saved login: one entry directly under the engine's root.
 *
 * @module
 */
import { basename, dirname, resolve } from 'node:path'

/**
 * The path of the entry `name` directly under `root`. Campaign ids are checked at the edge
 * (`CAMPAIGN_ID_PATTERN`), but a login is deleted recursively, so this refuses any name that
 * would not stay a direct child of `root` (`..`, a slash, an absolute path) rather than trust it.
 *
 * @example
 * campaignEntry('/data/wwebjs', 'session-spring-sale') // '/data/wwebjs/session-spring-sale'
 * campaignEntry('/data/wwebjs', 'session-/../../etc') // throws
 */
export function campaignEntry(root: string, name: string): string {
  const resolvedRoot = resolve(root)
  const path = resolve(resolvedRoot, name)
  if (dirname(path) !== resolvedRoot || basename(path) !== name) {
    throw new Error(`refused: ${JSON.stringify(name)} is not an entry of ${resolvedRoot}`)
  }
  return path
}
