/**
 * The start-up janitor against real Chromium processes "left by an earlier run": browsers spawned
 * here through a shell that exits at once, so they are orphans owned by init, exactly like the
 * browsers of a service that was killed.
 */
import { spawn } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { runJanitor } from '../../src/engines/wwebjs/janitor.ts'
import { createWwebjsEngine } from '../../src/engines/wwebjs/index.ts'
import {
  chromiumForTests,
  eventually,
  EventLog,
  killEverythingUnder,
  makeDataDir,
  NO_NETWORK_ARGS,
  profileLocks,
  within,
  type ProcessRecord,
} from './support.ts'

const chromePath = chromiumForTests()
const dataDirs: string[] = []

function newDataDir(): string {
  const dir = makeDataDir()
  dataDirs.push(dir)
  return dir
}

afterEach(() => {
  for (const dir of dataDirs.splice(0)) {
    killEverythingUnder(dir)
    rmSync(dir, { recursive: true, force: true })
  }
})

/** Live processes whose command line contains `needle`. */
function processesWith(needle: string): ProcessRecord[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .flatMap((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
        const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ')
        return [{ pid: Number(entry), state: fields[0] ?? '', pgid: Number(fields[2]), cmdline }]
      } catch {
        return []
      }
    })
    .filter((record) => record.state !== 'Z' && record.cmdline.includes(needle))
}

/**
 * Starts a marked Chromium on a profile under `dataDir`, orphaned (its parent shell exits), and
 * waits until it holds its profile lock. Returns the browser's process group.
 */
async function orphanedChromium(dataDir: string, campaignId: string): Promise<number> {
  const profileDir = join(dataDir, 'wwebjs', `session-${campaignId}`)
  mkdirSync(profileDir, { recursive: true })
  const args = [
    '--headless=new',
    ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
    `--user-data-dir=${profileDir}`,
    `--qrvisor-campaign=${campaignId}`,
    '--qrvisor-session=from-an-earlier-run',
    ...NO_NETWORK_ARGS,
    'about:blank',
  ]
  const shell = spawn('sh', ['-c', 'setsid "$0" "$@" >/dev/null 2>&1 &', chromePath, ...args], {
    stdio: 'ignore',
  })
  await new Promise((resolve) => shell.once('exit', resolve))
  const marker = `--qrvisor-campaign=${campaignId} `
  const locked = await eventually(
    () =>
      processesWith(marker).some((record) => record.cmdline.includes(profileDir)) &&
      profileLocks(dataDir).some((lock) => lock.endsWith('SingletonLock')),
    15_000
  )
  expect(locked, 'the orphaned Chromium runs and holds its profile lock').toBe(true)
  return processesWith(marker).find((record) => record.cmdline.includes(profileDir))!.pgid
}

describe('runJanitor', () => {
  it('kills a marked Chromium left by an earlier run, then removes its profile locks', async () => {
    const dataDir = newDataDir()
    const group = await orphanedChromium(dataDir, 'left-behind')

    const result = await runJanitor({ dataDir })
    expect(result.killed).toBeGreaterThanOrEqual(1)
    expect(result.locksRemoved).toBeGreaterThanOrEqual(1)
    expect(processesWith('--qrvisor-campaign=left-behind ')).toEqual([])
    const groupLeft = readdirSync('/proc').filter((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
        return Number(fields[2]) === group && fields[0] !== 'Z'
      } catch {
        return false
      }
    })
    expect(groupLeft).toEqual([])
    expect(profileLocks(dataDir)).toEqual([])
  })

  it('leaves the Chromiums of another data directory alone', async () => {
    const dataDir = newDataDir()
    const otherDataDir = newDataDir()
    await orphanedChromium(otherDataDir, 'someone-else')

    const result = await runJanitor({ dataDir })
    expect(result).toEqual({ killed: 0, locksRemoved: 0 })
    expect(processesWith('--qrvisor-campaign=someone-else ')).not.toEqual([])
    expect(profileLocks(otherDataDir)).not.toEqual([])
  })

  it('clears a stale lock from another host, so the campaign can launch again', async () => {
    const dataDir = newDataDir()
    const profileDir = join(dataDir, 'wwebjs', 'session-moved')
    mkdirSync(profileDir, { recursive: true })
    // What a container restarted on a persistent volume finds: a lock naming another host.
    symlinkSync('some-other-host-4242', join(profileDir, 'SingletonLock'))
    expect(readlinkSync(join(profileDir, 'SingletonLock'))).toBe('some-other-host-4242')

    const engine = createWwebjsEngine({
      dataDir,
      chromePath,
      destroyTimeoutMs: 2_000,
      killTimeoutMs: 2_000,
      extraChromiumArgs: NO_NETWORK_ARGS,
    })
    const launch = async () => {
      const log = new EventLog()
      const session = engine.createSession({
        campaignId: 'moved',
        sessionId: `moved-${Date.now()}`,
        onEvent: log.onEvent,
      })
      session.start()
      const terminated = await within(log.next('terminated'), 10_000, 'terminated')
      await session.stop()
      return terminated
    }

    const blocked = await launch()
    expect(blocked.kind).toBe('start_failed')
    expect(blocked.detail).toMatch(/Failed to launch|in use/)

    const result = await runJanitor({ dataDir })
    expect(result).toEqual({ killed: 0, locksRemoved: 1 })
    // Now the browser starts, and fails only for the lack of a network.
    const launched = await launch()
    expect(launched.detail).toContain('ERR_NAME_NOT_RESOLVED')
    await engine.close()
    expect(profileLocks(dataDir)).toEqual([])
  })
})
