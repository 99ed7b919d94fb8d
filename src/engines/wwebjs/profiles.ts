/**
 * One Chromium profile per campaign, `<dataDir>/wwebjs/session-<campaignId>`, so a linked
 * campaign comes back without a new scan. Two browsers cannot share a profile: a session waits for
 * the previous session of its campaign to be torn down (see ./session.ts), and a profile is
 * released (its locks dropped, or wiped after a logout) only once no process of the session is left.
 *
 * @module
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from '../../logger.ts'
import { removeProfileLocks } from './janitor.ts'

/** The profile of a campaign under the engine's profiles root. */
export function profileDirOf(profilesRoot: string, campaignId: string): string {
  return join(profilesRoot, `session-${campaignId}`)
}

export interface ReleaseProfileOptions {
  profileDir: string
  /** The session's browser pids: locks they left are stale, others' are not. */
  browserPids: number[]
  /** The saved auth is dead (the phone logged out): remove the whole profile. */
  wipe: boolean
  log: Logger
}

/** With no process of the session left: drops the locks a killed Chromium leaves behind. */
export function releaseProfile({
  profileDir,
  browserPids,
  wipe,
  log,
}: ReleaseProfileOptions): void {
  const removed = removeProfileLocks(profileDir, browserPids)
  if (removed > 0) log.debug({ removed }, 'removed stale profile locks')
  if (wipe) {
    rmSync(profileDir, { recursive: true, force: true })
    log.info('logged out: removed the saved WhatsApp auth of the campaign')
  }
}
