/**
 * The wwebjs engine's stop, bounded: a graceful close within its time, then SIGKILL to whatever is
 * left of the session, found in /proc by its marks and its process group.
 *
 * @module
 */
import type { Clock } from '../../clock.ts'
import { findSessionProcesses, SESSION_MARKER } from './chromium.ts'
import { killProcess, killProcessGroup, waitUntilGone, type ProcessInfo } from './processes.ts'

/** Resolves true if `promise` settles (either way) within `ms`, else false. */
export async function settlesWithin(
  promise: Promise<unknown>,
  ms: number,
  clock: Clock
): Promise<boolean> {
  let timer: unknown
  const timedOut = new Promise<false>((resolve) => {
    timer = clock.setTimeout(() => resolve(false), ms)
  })
  const settled = promise.then(
    () => true as const,
    () => true as const
  )
  try {
    return await Promise.race([settled, timedOut])
  } finally {
    clock.clearTimeout(timer)
  }
}

export interface KillSessionProcessesOptions {
  sessionId: string
  /** The session's browser, when it was heard of: its process group is killed first. */
  browserPid: number | undefined
  /** The session's browser pids; a browser found by its marks (its launch aborted) is added. */
  browserPids: Set<number>
  killTimeoutMs: number
  clock: Clock
}

/**
 * SIGKILLs every process of the session and waits until none is left, or `killTimeoutMs`;
 * answers the survivors.
 */
export function killSessionProcesses({
  sessionId,
  browserPid,
  browserPids,
  killTimeoutMs,
  clock,
}: KillSessionProcessesOptions): Promise<ProcessInfo[]> {
  const groups = browserPid === undefined ? [] : [browserPid]
  const find = () => findSessionProcesses(sessionId, groups)
  const kill = (processes: ProcessInfo[]) => {
    for (const leftover of processes) {
      // A browser we never heard of (its launch was aborted) may have locked the profile.
      if (leftover.argv.includes(`${SESSION_MARKER}${sessionId}`)) browserPids.add(leftover.pid)
      if (leftover.pgid === leftover.pid || groups.includes(leftover.pgid)) {
        killProcessGroup(leftover.pgid)
      }
      killProcess(leftover.pid)
    }
  }
  if (browserPid !== undefined) killProcessGroup(browserPid)
  kill(find())
  return waitUntilGone({ find, timeoutMs: killTimeoutMs, clock, onStillThere: kill })
}
