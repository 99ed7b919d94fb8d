/**
 * The simulated engine's saved logins on disk: one small file per linked campaign,
 * `<dataDir>/simulated/<campaignId>.json`, so a restart of the service finds its campaigns linked
 * as a restart with the real engine finds their Chromium profiles.
 *
 * The file is the one truth for "this campaign has a login". Every operation is synchronous: each
 * is one small file (a few hundred microseconds), their order per campaign is then the order of
 * the calls (a login saved at `ready` and deleted by a logout right after cannot come back), and
 * tests in simulated time see the disk as it is.
 *
 * @module
 */
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Clock } from '../clock.ts'
import { campaignEntry } from './campaignEntry.ts'

export interface SimulatedLogins {
  has(campaignId: string): boolean
  /** Writes the campaign's login atomically (a temporary file, then a rename). */
  save(campaignId: string): void
  /** Deletes the campaign's login; nothing happens when there is none. */
  forget(campaignId: string): void
}

/** The directory of the simulated engine's saved logins under DATA_DIR. */
export function simulatedLoginsRoot(dataDir: string): string {
  return join(dataDir, 'simulated')
}

export function simulatedLoginFiles(dataDir: string, clock: Clock): SimulatedLogins {
  const root = simulatedLoginsRoot(dataDir)
  const fileOf = (campaignId: string) => campaignEntry(root, `${campaignId}.json`)
  // A dot-file: never read as a login, and left behind only by a crash between write and rename.
  const temporaryFileOf = (campaignId: string) => campaignEntry(root, `.${campaignId}.json.tmp`)
  return {
    has: (campaignId) => existsSync(fileOf(campaignId)),
    save(campaignId) {
      const file = fileOf(campaignId)
      const temporary = temporaryFileOf(campaignId)
      mkdirSync(root, { recursive: true })
      const login = { campaignId, linkedAt: new Date(clock.now()).toISOString() }
      writeFileSync(temporary, `${JSON.stringify(login)}\n`)
      renameSync(temporary, file)
    },
    forget(campaignId) {
      rmSync(fileOf(campaignId), { force: true })
      rmSync(temporaryFileOf(campaignId), { force: true })
    },
  }
}
