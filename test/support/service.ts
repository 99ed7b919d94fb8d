/**
 * Process-level test support: the service built as the README says (`npm run build`), started
 * as a child process (`npm start`, or `node dist/main.js` when a test needs the node process
 * itself), its JSON log lines read as they come, and WebSocket clients that report their close
 * code. Every child started here is killed by `killServices()` if a test left it running.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Stream } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'
import type { Json } from './edge.ts'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** `npm run build`, as a user runs it before `npm start`. */
export function buildService(): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('npm', ['run', 'build'], { cwd: ROOT }, (error, stdout, stderr) =>
      error ? reject(new Error(`npm run build failed:\n${stdout}${stderr}`)) : resolve()
    )
  })
}

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface ServiceProcess {
  child: ChildProcess
  /** Parsed JSON log lines from the child's standard output (other lines as `{ msg }`). */
  lines: Json[]
  stderr: string[]
  /** The child's exit, once its standard output and error are read to the end. */
  exited: Promise<Exit>
  /**
   * Resolves once every process holding the child's standard output has closed it and its last
   * line is in `lines` (the exit of `npm` says nothing of a node that outlived it).
   */
  outputEnded: Promise<void>
}

const children = new Set<ChildProcess>()
/** DATA_DIRs made for services started without one; removed once their services are killed. */
const dataDirs = new Set<string>()

/** `node dist/main.js` as `npm start` runs it. */
export const NODE_COMMAND = [process.execPath, '--enable-source-maps', 'dist/main.js']

/** The service from its sources, no build needed (`node --import tsx src/main.ts`). */
export const SOURCE_COMMAND = [process.execPath, '--import', 'tsx', 'src/main.ts']

/**
 * Starts `npm start` (`how: 'npm'`), `node dist/main.js` (`how: 'node'`) or a command line that
 * ends up running it, in a process group of its own, so a test can signal the whole group as a
 * terminal's Ctrl-C does.
 */
export function spawnService(
  how: 'npm' | 'node' | string[],
  env: Record<string, string>,
  { stdout = 'pipe' }: { stdout?: 'pipe' | number | Stream } = {}
): ServiceProcess {
  const [command = 'npm', ...args] =
    how === 'npm' ? ['npm', 'start'] : how === 'node' ? NODE_COMMAND : how
  // A DATA_DIR of its own unless the test names one: the store in it is locked to one process.
  let dataDir = env.DATA_DIR
  if (!dataDir) {
    dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-process-'))
    dataDirs.add(dataDir)
  }
  const child = spawn(command, args, {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/root',
      DATA_DIR: dataDir,
      ...env,
    },
    stdio: ['ignore', stdout, 'pipe'],
    detached: true,
  })
  children.add(child)
  const lines: Json[] = []
  const stderr: string[] = []
  let outputEnded = Promise.resolve()
  if (child.stdout) {
    const reader = createInterface({ input: child.stdout })
    reader.on('line', (line) => {
      try {
        lines.push(JSON.parse(line))
      } catch {
        lines.push({ msg: line })
      }
    })
    outputEnded = new Promise((resolve) => reader.once('close', resolve))
  }
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line))
  // 'close', not 'exit': by then the output has been read to its last line.
  const exited = new Promise<Exit>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal }))
  )
  return { child, lines, stderr, exited, outputEnded }
}

/**
 * Kills (SIGKILL) the process group of every service a test started, whatever is left of it: the
 * group outlives its leader when npm died and node did not.
 */
export function killServices(): void {
  for (const child of children) {
    if (child.pid === undefined) continue
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {
      // Nothing of the group is left.
    }
  }
  children.clear()
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true })
  dataDirs.clear()
}

/**
 * Kills (SIGKILL) every service a test started, as `killServices()` does, and resolves once each
 * one has exited, with the pids that were killed: a test's `afterEach` checks that none runs.
 */
export async function stopServices(): Promise<number[]> {
  const started = [...children]
  const exits = started.map((child) =>
    child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => child.once('exit', () => resolve()))
  )
  killServices()
  await Promise.all(exits)
  return started.flatMap((child) => (child.pid === undefined ? [] : [child.pid]))
}

/** Polls (bounded) until `check` answers something; throws with `what` when it never does. */
export async function waitFor<T>(
  check: () => T | undefined,
  what: string,
  timeoutMs = 20_000
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const found = check()
    if (found !== undefined) return found
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** The "qrvisor is listening" line: the service's URL and the pid of its node process. */
export function listening(service: ServiceProcess): Promise<{ url: string; pid: number }> {
  return waitFor(() => {
    const line = service.lines.find((entry) => entry.msg === 'qrvisor is listening')
    if (line) return { url: line.url as string, pid: line.pid as number }
    if (service.child.exitCode !== null) {
      throw new Error(`the service exited: ${service.stderr.join('\n')}`)
    }
    return undefined
  }, 'the service listening')
}

/** Whether a process with this pid still runs (a zombie counts as gone). */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

/** A WebSocket subscribed to a session, resolved at its first QR, with its close code to come. */
export function subscribedSocket(
  url: string,
  sessionId: string,
  query = ''
): Promise<{ closed: Promise<number> }> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/ws/campaigns${query}`)
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
  return new Promise((resolve, reject) => {
    ws.once('error', reject)
    ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', sessionId })))
    ws.on('message', (data) => {
      if (JSON.parse(data.toString()).type === 'qr_code') resolve({ closed })
    })
  })
}

/** Starts (or joins) a session for each campaign; resolves their session ids in order. */
export async function startSessions(
  url: string,
  token: string,
  campaignIds: string[]
): Promise<string[]> {
  const ids: string[] = []
  for (const campaignId of campaignIds) {
    const answer = await fetch(`${url}/api/campaigns/${campaignId}/qr-code`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}` },
    })
    if (!answer.ok) throw new Error(`qr-code for ${campaignId}: ${answer.status}`)
    ids.push(((await answer.json()) as { sessionId: string }).sessionId)
  }
  return ids
}

/** The tags (`session`, a hash of the id) of the sessions the log says were cleaned. */
export function cleanedSessions(lines: Json[]): string[] {
  return lines
    .filter((line) => line.msg === 'session status' && line.status === 'cleaned')
    .map((line) => line.session as string)
    .sort()
}
