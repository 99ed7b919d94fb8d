/**
 * Linux process helpers for the real engine: read `/proc`, kill process groups, wait until a set
 * of processes is gone, and add up their memory.
 *
 * We go to `/proc` rather than trusting puppeteer or whatsapp-web.js, because those are exactly
 * what fails to clean up (zombie Chromiums are the most reported problem of every wrapper around
 * it). A process that is a zombie (state `Z`) counts as gone: it holds no memory and cannot be
 * killed any further; reaping it is the init process's job (run containers with `--init`).
 *
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs'
import { delay, type Clock } from '../../clock.ts'

export interface ProcessInfo {
  pid: number
  ppid: number
  /** Process group id. Chromium's browser process leads its own group (puppeteer spawns it detached). */
  pgid: number
  /** One-letter state from /proc/<pid>/stat (`R`, `S`, `T` for stopped, `Z` for zombie, ...). */
  state: string
  /** argv, split on NUL. Empty for zombies and kernel threads. */
  argv: string[]
}

/** Every process visible in /proc (processes that vanish while we read are skipped). */
export function listProcesses(): ProcessInfo[] {
  const processes: ProcessInfo[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const info = readProcess(Number(entry))
    if (info) processes.push(info)
  }
  return processes
}

export function readProcess(pid: number): ProcessInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    if (argv.at(-1) === '') argv.pop()
    return {
      pid,
      state: fields[0] ?? '?',
      ppid: Number(fields[1]),
      pgid: Number(fields[2]),
      argv,
    }
  } catch {
    return undefined
  }
}

/** The value of one environment variable of a process, or undefined (unset, gone, or not ours). */
export function readEnvironmentVariable(pid: number, name: string): string | undefined {
  try {
    const prefix = `${name}=`
    for (const entry of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
      if (entry.startsWith(prefix)) return entry.slice(prefix.length)
    }
  } catch {
    // Gone, or owned by another user: either way not one of ours.
  }
  return undefined
}

export function isAlive(process: ProcessInfo): boolean {
  return process.state !== 'Z'
}

/**
 * SIGKILLs a whole process group; true if the signal was delivered. ESRCH (no such group) is the
 * normal outcome of killing twice. Group ids 0 and 1 and our own group are refused: `kill(-0)`
 * would hit ourselves and `kill(-1)` every process we may signal.
 */
export function killProcessGroup(pgid: number): boolean {
  if (!Number.isInteger(pgid) || pgid <= 1 || pgid === ownProcessGroup()) return false
  return sendKill(-pgid)
}

/** SIGKILLs one process; true if the signal was delivered. */
export function killProcess(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) return false
  return sendKill(pid)
}

function sendKill(target: number): boolean {
  try {
    process.kill(target, 'SIGKILL')
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw error
  }
}

let cachedOwnProcessGroup: number | undefined
function ownProcessGroup(): number {
  cachedOwnProcessGroup ??= readProcess(process.pid)?.pgid ?? process.pid
  return cachedOwnProcessGroup
}

export interface WaitUntilGoneOptions {
  /** Finds the processes still to wait for (called on every poll). */
  find: () => ProcessInfo[]
  timeoutMs: number
  clock: Clock
  /** Called with the processes found on each poll, e.g. to SIGKILL late arrivals. */
  onStillThere?: (processes: ProcessInfo[]) => void
  pollMs?: number
}

/**
 * Polls until `find()` returns no live process, or `timeoutMs` passes. Returns the processes that
 * were still there at the end (empty = all gone).
 */
export async function waitUntilGone({
  find,
  timeoutMs,
  clock,
  onStillThere,
  pollMs = 20,
}: WaitUntilGoneOptions): Promise<ProcessInfo[]> {
  const deadline = clock.now() + timeoutMs
  for (;;) {
    const remaining = find().filter(isAlive)
    if (remaining.length === 0) return remaining
    if (clock.now() >= deadline) return remaining
    onStillThere?.(remaining)
    await delay(clock, Math.min(pollMs, Math.max(1, deadline - clock.now())))
  }
}

/**
 * Proportional set size of a process in bytes (shared pages split among their users), from
 * /proc/<pid>/smaps_rollup; 0 if the process is gone or unreadable.
 */
export function readPssBytes(pid: number): number {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
    const match = /^Pss:\s+(\d+) kB/m.exec(rollup)
    return match?.[1] ? Number(match[1]) * 1024 : 0
  } catch {
    return 0
  }
}
