/**
 * The watchdog outside the event loop (issue 12), with real processes standing in for browsers:
 * a main thread that blocks itself past a lease's fencing deadline has its browser (and the
 * browser's process group) SIGKILLed while it is still blocked; a main thread that beats, a
 * deadline not passed, an unwatched campaign and a stopped watchdog kill nothing.
 *
 * Real time: the point is a second thread that runs while this one does not.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import {
  hrtimeMs,
  startWatchdog,
  type Watchdog,
  type WatchdogOptions,
} from '../../src/cluster/watchdog.ts'

/** Short settings, so that a blocked main thread is noticed well within each test's block. */
const BLOCKED_AFTER_MS = 400
const BEAT_MS = 100
const POLL_MS = 25
/** Long enough for the worker to notice and kill, with room for a busy 2-core machine. */
const BLOCK_MS = 1_500

interface StandIn {
  /** The stand-in browser: `sh`, leading its own process group. */
  pid: number
  /** A child of it in its group (Chromium's renderers), which only a group kill reaches. */
  childPid: number
  exited: Promise<NodeJS.Signals | null>
}

const standIns: ChildProcess[] = []
const watchdogs: Watchdog[] = []
const logDir = mkdtempSync(join(tmpdir(), 'qrvisor-watchdog-'))
const logFds: number[] = []
const watchdogModule = new URL('../../src/cluster/watchdog.ts', import.meta.url).href

afterEach(async () => {
  await Promise.all(watchdogs.splice(0).map((watchdog) => watchdog.stop()))
  for (const child of standIns.splice(0)) {
    try {
      process.kill(-child.pid!, 'SIGKILL')
    } catch {
      // Gone already.
    }
  }
  for (const fd of logFds.splice(0)) closeSync(fd)
})

afterAll(() => rmSync(logDir, { recursive: true, force: true }))

/** A browser stand-in: a process leading its own group, with a child in that group. */
async function startStandIn(): Promise<StandIn> {
  const child = spawn('sh', ['-c', 'sleep 1000 & echo $!; wait'], {
    detached: true,
    stdio: ['ignore', 'pipe', 'ignore'],
  })
  standIns.push(child)
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once('exit', (_code, signal) => resolve(signal))
  )
  const childPid = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (chunk: Buffer) => resolve(Number(String(chunk).trim())))
    child.once('error', reject)
  })
  return { pid: child.pid!, childPid, exited }
}

/** The process's state letter in /proc (`S`, `Z` for a zombie), or undefined once it is gone. */
function stateOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]
  } catch {
    return undefined
  }
}

function isDead(pid: number): boolean {
  const state = stateOf(pid)
  return state === undefined || state === 'Z'
}

/**
 * Runs nothing but this loop for `ms` (no timer, no message, no I/O callback of this thread);
 * notes, from /proc, when each of `pids` died meanwhile (a killed child stays a zombie until
 * this thread reaps it, after the loop).
 */
function blockMainThread(ms: number, pids: number[] = []) {
  const startedAt = performance.now()
  const diedAt = new Map<number, number>()
  let now = startedAt
  while (now < startedAt + ms) {
    for (const pid of pids) {
      if (!diedAt.has(pid) && isDead(pid)) diedAt.set(pid, now)
    }
    now = performance.now()
  }
  return { startedAt, endedAt: now, diedAt }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function startTestWatchdog(options: WatchdogOptions = {}) {
  const logFile = join(logDir, `kills-${watchdogs.length}-${Date.now()}.log`)
  const logFd = openSync(logFile, 'a')
  logFds.push(logFd)
  const killed: string[][] = []
  const watchdog = startWatchdog({
    blockedAfterMs: BLOCKED_AFTER_MS,
    beatMs: BEAT_MS,
    pollMs: POLL_MS,
    logFd,
    onKilled: (campaignIds) => killed.push(campaignIds),
    ...options,
  })
  watchdogs.push(watchdog)
  const parse = (text: string) =>
    text
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
  return {
    watchdog,
    killed,
    /** The worker's kill lines. */
    killLines: async () => parse(await readFile(logFile, 'utf8')),
    /** The same, read without giving this thread's event loop a turn. */
    killLinesNow: () => parse(readFileSync(logFile, 'utf8')),
  }
}

describe('startWatchdog', () => {
  it("kills a campaign's browser and its process group while the main thread is blocked past the deadline", async () => {
    const { watchdog, killed, killLines, killLinesNow } = startTestWatchdog()
    const browser = await startStandIn()
    const other = await startStandIn()
    watchdog.watch('campaign-1', hrtimeMs() + 100, [browser.pid])
    watchdog.watch('campaign-2', hrtimeMs() + 60_000, [other.pid])

    const block = blockMainThread(BLOCK_MS, [browser.pid, browser.childPid])
    const writtenWhileBlocked = killLinesNow()

    // Killed during the block, and not before the main thread counted as blocked.
    for (const pid of [browser.pid, browser.childPid]) {
      const diedAt = block.diedAt.get(pid)
      expect(diedAt, `pid ${pid} died while the main thread was blocked`).toBeDefined()
      expect(diedAt!).toBeLessThan(block.endedAt)
      expect(diedAt! - block.startedAt).toBeGreaterThanOrEqual(BLOCKED_AFTER_MS - BEAT_MS)
    }
    expect(await browser.exited).toBe('SIGKILL')
    // The campaign whose deadline had not passed keeps its browser.
    expect(isDead(other.pid)).toBe(false)
    expect(isDead(other.childPid)).toBe(false)

    // Reported once the main thread runs again, and written as one line by the worker itself.
    for (let i = 0; i < 50 && killed.length === 0; i++) await sleep(20)
    expect(killed).toEqual([['campaign-1']])
    const lines = await killLines()
    expect(lines).toHaveLength(1)
    expect(writtenWhileBlocked).toEqual(lines)
    expect(lines[0]).toMatchObject({
      level: 50,
      msg: "watchdog: main thread blocked past a lease's fencing deadline; killed its browser",
      campaignId: 'campaign-1',
      pids: [browser.pid],
    })
    expect(lines[0]!.blockedForMs).toBeGreaterThanOrEqual(BLOCKED_AFTER_MS)

    // Once: blocked again, nothing more is killed or reported.
    blockMainThread(BLOCKED_AFTER_MS * 2)
    await sleep(100)
    expect(killed).toEqual([['campaign-1']])
    expect(await killLines()).toHaveLength(1)
  })

  it('kills nothing while the main thread beats, even past a deadline (the keeper fences itself)', async () => {
    const { watchdog, killed, killLines } = startTestWatchdog()
    const browser = await startStandIn()
    watchdog.watch('campaign-1', hrtimeMs() - 1, [browser.pid])

    await sleep(BLOCKED_AFTER_MS * 3)

    expect(isDead(browser.pid)).toBe(false)
    expect(isDead(browser.childPid)).toBe(false)
    expect(killed).toEqual([])
    expect(await killLines()).toEqual([])
  })

  it('kills nothing while the main thread is blocked before the deadline', async () => {
    const { watchdog, killed } = startTestWatchdog()
    const browser = await startStandIn()
    watchdog.watch('campaign-1', hrtimeMs() + 60_000, [browser.pid])

    const block = blockMainThread(BLOCK_MS, [browser.pid, browser.childPid])

    expect(block.diedAt).toEqual(new Map())
    await sleep(100)
    expect(killed).toEqual([])
  })

  it('keeps the deadline of the last watch (a renewal)', async () => {
    const { watchdog, killed } = startTestWatchdog()
    const browser = await startStandIn()
    watchdog.watch('campaign-1', hrtimeMs() - 1, [browser.pid])
    watchdog.watch('campaign-1', hrtimeMs() + 60_000, [browser.pid])

    const block = blockMainThread(BLOCK_MS, [browser.pid])

    expect(block.diedAt).toEqual(new Map())
    await sleep(100)
    expect(killed).toEqual([])
  })

  it('kills nothing of an unwatched campaign', async () => {
    const { watchdog, killed } = startTestWatchdog()
    const browser = await startStandIn()
    watchdog.watch('campaign-1', hrtimeMs() - 1, [browser.pid])
    watchdog.unwatch('campaign-1')

    const block = blockMainThread(BLOCK_MS, [browser.pid])

    expect(block.diedAt).toEqual(new Map())
    await sleep(100)
    expect(killed).toEqual([])
  })

  it('ends its worker thread on stop(), and kills nothing after it', async () => {
    // Starts libuv's thread pool now, so that only the worker's thread comes and goes below.
    await readFile('/proc/self/stat')
    const threadsBefore = readdirSync('/proc/self/task').length
    const { watchdog, killed } = startTestWatchdog()
    const browser = await startStandIn()
    watchdog.watch('campaign-1', hrtimeMs() - 1, [browser.pid])
    await sleep(50)
    expect(readdirSync('/proc/self/task').length).toBeGreaterThan(threadsBefore)

    await watchdog.stop()

    expect(readdirSync('/proc/self/task').length).toBe(threadsBefore)
    const block = blockMainThread(BLOCKED_AFTER_MS * 2, [browser.pid])
    expect(block.diedAt).toEqual(new Map())
    await sleep(50)
    expect(killed).toEqual([])
    await watchdog.stop()
  })

  it('runs under `node --import tsx`, and keeps no process alive: one that never stops it exits', () => {
    // A file, not --eval: a worker thread inherits the process's execArgv.
    const program = join(logDir, 'blocked-node.mjs')
    writeFileSync(
      program,
      `import { spawn } from 'node:child_process'
import { hrtimeMs, startWatchdog } from ${JSON.stringify(watchdogModule)}
const browser = spawn('sleep', ['1000'], { detached: true, stdio: 'ignore' })
browser.on('exit', (_code, signal) => console.log('browser', signal))
const watchdog = startWatchdog({
  blockedAfterMs: ${BLOCKED_AFTER_MS},
  beatMs: ${BEAT_MS},
  pollMs: ${POLL_MS},
  onKilled: (campaignIds) => console.log('killed', campaignIds.join()),
})
watchdog.watch('campaign-1', hrtimeMs(), [browser.pid])
const end = performance.now() + ${BLOCK_MS}
while (performance.now() < end) {}
`
    )
    const run = spawnSync(process.execPath, ['--import', 'tsx', program], {
      encoding: 'utf8',
      timeout: 15_000,
    })
    expect(run.status).toBe(0)
    expect(run.stdout.split('\n').sort()).toEqual(['', 'browser SIGKILL', 'killed campaign-1'])
    const [line, ...rest] = run.stderr.split('\n')
    expect(rest).toEqual([''])
    expect(JSON.parse(line!)).toMatchObject({ level: 50, campaignId: 'campaign-1' })
  })

  it('refuses a heartbeat too slow for blockedAfterMs', () => {
    expect(() => startWatchdog({ blockedAfterMs: 400, beatMs: 250 })).toThrow(/beatMs/)
  })
})
