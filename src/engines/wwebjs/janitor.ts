/**
 * The start-up janitor: kills the Chromium processes an earlier run of qrvisor left behind with
 * this data directory, and only then removes their stale profile locks.
 *
 * Why both, and in that order: after a crash of the service (or `kill -9`), its Chromiums keep
 * running (puppeteer only kills them on a clean exit of Node), each holding its campaign's
 * profile. A new session for that campaign would then fail with "The browser is already running".
 * And a Chromium that is SIGKILLed leaves `SingletonLock` behind; on a persistent volume moved to
 * another host (a container restart) that lock names another hostname and every launch fails at
 * once ("The profile appears to be in use by another Chromium process ... on another computer").
 * Removing a lock under a live Chromium would let two browsers share one profile, so locks go only
 * after their owners are gone. At start-up every lock under the data directory whose profile no
 * live process uses is stale by definition: the data directory belongs to this service alone
 * (never share one between hosts that run at the same time).
 *
 * Only processes tied to this data directory are touched (their command line names a profile
 * under `<dataDir>/wwebjs/`, or their environment does), so two services on one host with
 * different data directories leave each other alone. Browsers that this very process started are
 * skipped too.
 *
 * @module
 */
import { lstatSync, readdirSync, readlinkSync, rmSync, unlinkSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { systemClock, type Clock } from '../../clock.ts'
import { silentLogger, type Logger } from '../../logger.ts'
import { CAMPAIGN_MARKER, PROFILE_ENV, switchValue } from './chromium.ts'
import {
  killProcess,
  killProcessGroup,
  listProcesses,
  readEnvironmentVariable,
  readProcess,
  waitUntilGone,
  type ProcessInfo,
} from './processes.ts'

export interface JanitorOptions {
  /** The service's DATA_DIR; profiles live under `<dataDir>/wwebjs/`. */
  dataDir: string
  logger?: Logger
  /** How long to wait for killed processes to vanish. */
  killTimeoutMs?: number
  clock?: Clock
}

export interface JanitorResult {
  /** Processes of an earlier run that were killed (browsers and their children). */
  killed: number
  /** Profile lock files removed (`SingletonLock`, `SingletonSocket`, `SingletonCookie`). */
  locksRemoved: number
}

export const PROFILE_LOCK_FILES = ['SingletonLock', 'SingletonSocket', 'SingletonCookie'] as const

/** Where the wwebjs engine keeps its per-campaign Chromium profiles. */
export function profilesRoot(dataDir: string): string {
  return join(resolve(dataDir), 'wwebjs')
}

/**
 * Kills what an earlier run left behind, then clears stale profile locks. Call it once at
 * start-up, before the first session starts.
 */
export async function runJanitor({
  dataDir,
  logger = silentLogger,
  killTimeoutMs = 5_000,
  clock = systemClock,
}: JanitorOptions): Promise<JanitorResult> {
  const root = profilesRoot(dataDir)
  const leftovers = findLeftoverProcesses(root)
  for (const leftover of leftovers) {
    const campaignId = switchValue(leftover.argv, CAMPAIGN_MARKER)
    if (campaignId !== undefined) {
      logger.warn({ campaignId, pid: leftover.pid }, 'killing a Chromium left by an earlier run')
    }
    killProcessGroup(leftover.pgid)
    killProcess(leftover.pid)
  }
  const leftoverPids = new Set(leftovers.map((leftover) => leftover.pid))
  const survivors = await waitUntilGone({
    find: () => [...leftoverPids].flatMap((pid) => readProcess(pid) ?? []),
    timeoutMs: killTimeoutMs,
    clock,
  })
  if (survivors.length > 0) {
    logger.error(
      { pids: survivors.map((survivor) => survivor.pid) },
      'processes left by an earlier run survived SIGKILL; their profiles keep their locks'
    )
  }

  let locksRemoved = 0
  const profilesInUse = new Set(
    listProcesses().flatMap((candidate) => switchValue(candidate.argv, '--user-data-dir=') ?? [])
  )
  for (const profileDir of listProfileDirs(root)) {
    if (profilesInUse.has(profileDir)) continue
    locksRemoved += removeProfileLocks(profileDir)
  }
  if (leftovers.length > 0 || locksRemoved > 0) {
    logger.info({ killed: leftovers.length, locksRemoved }, 'janitor cleaned up an earlier run')
  }
  return { killed: leftovers.length, locksRemoved }
}

/**
 * Processes tied to profiles under `root` that this process did not start: marked browsers,
 * their orphaned children (zygotes and renderers name the profile too), and crash handlers
 * (found by their environment).
 */
export function findLeftoverProcesses(root: string): ProcessInfo[] {
  const processes = listProcesses()
  const byPid = new Map(processes.map((candidate) => [candidate.pid, candidate]))
  const startedByUs = (candidate: ProcessInfo): boolean =>
    candidate.ppid === process.pid || byPid.get(candidate.pgid)?.ppid === process.pid
  const isUnderRoot = (path: string | undefined): boolean =>
    path !== undefined && resolve(path).startsWith(root + '/')

  return processes.filter((candidate) => {
    if (candidate.pid === process.pid || startedByUs(candidate)) return false
    if (isUnderRoot(switchValue(candidate.argv, '--user-data-dir='))) return true
    return isUnderRoot(readEnvironmentVariable(candidate.pid, PROFILE_ENV))
  })
}

function listProfileDirs(root: string): string[] {
  try {
    return readdirSync(root, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => join(root, entry.name))
  } catch {
    return []
  }
}

/**
 * Removes Chromium's single-instance lock files from a profile whose browser is gone, and the
 * temporary directory `SingletonSocket` points into. Returns how many lock files were removed.
 *
 * With `ownerPids`, the locks go only if `SingletonLock` names this host and one of those
 * browsers (`<hostname>-<pid>`): a session cleans up after its own browser, never after another.
 */
export function removeProfileLocks(profileDir: string, ownerPids?: readonly number[]): number {
  if (ownerPids !== undefined) {
    let owner: string
    try {
      owner = readlinkSync(join(profileDir, 'SingletonLock'))
    } catch {
      return 0
    }
    if (!ownerPids.some((pid) => owner === `${hostname()}-${pid}`)) return 0
  }
  let removed = 0
  for (const name of PROFILE_LOCK_FILES) {
    const lockPath = join(profileDir, name)
    let target: string | undefined
    try {
      // The locks are symlinks, usually dangling: lstat, never stat.
      if (lstatSync(lockPath).isSymbolicLink()) target = readlinkSync(lockPath)
      unlinkSync(lockPath)
      removed += 1
    } catch {
      continue
    }
    if (name === 'SingletonSocket' && target !== undefined) removeSocketDir(target)
  }
  return removed
}

/** `SingletonSocket` links to `/tmp/org.chromium.Chromium.XXXXXX/SingletonSocket`. */
function removeSocketDir(socketPath: string): void {
  const socketDir = dirname(socketPath)
  if (dirname(socketDir) !== tmpdir() && dirname(socketDir) !== '/tmp') return
  if (!/^\.?org\.chromium\.Chromium\./.test(basename(socketDir))) return
  try {
    rmSync(socketDir, { recursive: true, force: true })
  } catch {
    // Best effort: a stray empty directory in /tmp harms nothing.
  }
}
