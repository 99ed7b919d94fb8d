/**
 * One Chromium profile per campaign, `<dataDir>/wwebjs/session-<campaignId>`, so a linked
 * campaign comes back without a new scan. Two browsers cannot share a profile: a session waits for
 * the work in progress on its campaign's profile (a teardown, a deletion) before it launches, and a
 * profile is released (its locks dropped, or wiped after a logout) only once no process of the
 * session is left.
 *
 * @module
 */
import { rmSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../../logger.ts'
import { campaignEntry } from '../campaignEntry.ts'
import { removeProfileLocks } from './janitor.ts'

/** The profile of a campaign under the engine's profiles root (`LocalAuth`'s own naming). */
export function profileDirOf(profilesRoot: string, campaignId: string): string {
  return join(profilesRoot, `session-${campaignId}`)
}

/**
 * Registers `work` on the campaign's profile: whatever is queued next for that profile waits for
 * it and for everything registered before it. The entry goes once all of it has settled.
 */
export function occupyProfile(
  profileWork: Map<string, Promise<unknown>>,
  campaignId: string,
  work: Promise<unknown>
): void {
  const previous = profileWork.get(campaignId)
  const all = Promise.allSettled(previous === undefined ? [work] : [previous, work])
  profileWork.set(campaignId, all)
  void all.then(() => {
    if (profileWork.get(campaignId) === all) profileWork.delete(campaignId)
  })
}

export interface ForgetProfileOptions {
  profilesRoot: string
  campaignId: string
  profileWork: Map<string, Promise<unknown>>
  log: Logger
}

/**
 * Deletes the campaign's profile (its saved login) once the work in progress on it is over.
 * Rejects, touching nothing, if the campaign id would lead out of the profiles root.
 */
export async function forgetProfile({
  profilesRoot,
  campaignId,
  profileWork,
  log,
}: ForgetProfileOptions): Promise<void> {
  const profileDir = campaignEntry(profilesRoot, `session-${campaignId}`)
  const previous = profileWork.get(campaignId)
  const deletion = (async () => {
    await previous
    await rm(profileDir, { recursive: true, force: true, maxRetries: 3 })
  })()
  occupyProfile(profileWork, campaignId, deletion)
  await deletion
  log.info({ campaignId }, 'removed the saved WhatsApp login of the campaign')
}

export interface ReleaseProfileOptions {
  profileDir: string
  /** The session's browser pids: locks they left are stale, others' are not. */
  browserPids: number[]
  /** The saved auth is dead or unwanted (a logout): remove the whole profile. */
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
