/**
 * The built service with the wwebjs engine, as a process: live sessions on a real Chromium (a
 * local stand-in for web.whatsapp.com shows their QRs), then a Ctrl-C to the whole process group
 * of `npm start`, a log reader that went away, or an exception nothing catches. Each time every
 * browser is gone when the process has exited (issues 9, 16 and 8), and no browser ever saw the
 * service's secret in its environment. And a full disk under DATA_DIR (a small tmpfs mounted in a
 * mount namespace of the service's own) is a clear error at start and at each session start.
 */
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { signToken } from '../../scripts/token.ts'
import { sessionTag } from '../../src/sessionTag.ts'
import { SECRET } from '../support/edge.ts'
import {
  buildService,
  cleanedSessions,
  isRunning,
  killServices,
  listening,
  NODE_COMMAND,
  spawnService,
  startSessions,
  subscribedSocket,
  type Exit,
} from '../support/service.ts'
import {
  chromiumForTests,
  environ,
  killEverythingUnder,
  makeDataDir,
  markedBrowser,
  processesOf,
  startStandIn,
  within,
  type StandIn,
} from './support.ts'

const dataDir = makeDataDir()
let whatsapp: StandIn
let env: Record<string, string>
let token: string
/** Teardown bound (DESTROY + KILL) plus polling and scheduling slack on a busy machine. */
const STOP_WITHIN_MS = 4_000 + 6_000

beforeAll(async () => {
  token = await signToken({ secret: SECRET, sub: 'alice' })
  whatsapp = await startStandIn('whatsapp')
  // The service starts this as its Chromium: the real one, sent to the stand-in.
  const browser = join(dataDir, 'chromium-with-stand-in')
  writeFileSync(
    browser,
    `#!/bin/sh\nexec ${chromiumForTests()} ${whatsapp.chromiumArgs.map((arg) => `'${arg}'`).join(' ')} "$@"\n`
  )
  chmodSync(browser, 0o755)
  env = {
    WA_ENGINE: 'wwebjs',
    CHROME_PATH: browser,
    DATA_DIR: dataDir,
    PORT: '0',
    JWT_SECRET: SECRET,
    INIT_TIMEOUT_MS: '30000',
    SCAN_TIMEOUT_MS: '60000',
    DESTROY_TIMEOUT_MS: '2000',
    KILL_TIMEOUT_MS: '2000',
    MAX_SESSIONS: '4',
    LOG_LEVEL: 'info',
  }
  await buildService()
}, 180_000)

afterEach(() => {
  killServices()
  killEverythingUnder(dataDir)
})

afterAll(async () => {
  killEverythingUnder(dataDir)
  rmSync(dataDir, { recursive: true, force: true })
  await whatsapp?.close()
})

/** Sessions whose QR a subscribed socket has received (so each has a live Chromium). */
async function sessionsShowingQr(url: string, campaignIds: string[]) {
  const sessionIds = await startSessions(url, token, campaignIds)
  const sockets = await Promise.all(sessionIds.map((id) => subscribedSocket(url, id)))
  for (const sessionId of sessionIds) expect(markedBrowser(sessionId)).toBeDefined()
  return { sessionIds, closed: Promise.all(sockets.map((socket) => socket.closed)) }
}

function expectNoBrowserLeft(sessionIds: string[]): void {
  for (const sessionId of sessionIds) expect(processesOf(sessionId, dataDir)).toEqual([])
}

describe('the built service on the wwebjs engine, as a process', () => {
  it('npm start, Ctrl-C to the whole group: counted once, every browser gone, exit 0', async () => {
    const service = spawnService('npm', env)
    const { url, pid } = await listening(service)
    const { sessionIds, closed } = await sessionsShowingQr(url, ['w1', 'w2'])
    // Issue 8: no browser process sees the service's configuration.
    for (const sessionId of sessionIds) {
      const browserEnvironment = environ(markedBrowser(sessionId)!.pid)
      expect(browserEnvironment).toContain(`QRVISOR_SESSION=${sessionId}`)
      expect(browserEnvironment).not.toContain('JWT_SECRET')
      expect(browserEnvironment).not.toContain(SECRET)
    }

    process.kill(-service.child.pid!, 'SIGINT')
    expect(await within(closed, STOP_WITHIN_MS, 'sockets closed')).toEqual([1001, 1001])
    expect(await within(service.exited, STOP_WITHIN_MS, 'npm exited')).toEqual<Exit>({
      code: 0,
      signal: null,
    })
    expect(isRunning(pid)).toBe(false)
    expect(cleanedSessions(service.lines)).toEqual(sessionIds.map(sessionTag).sort())
    expect(service.lines.map((line) => line.msg)).not.toContain(
      'second signal: exiting without waiting'
    )
    expectNoBrowserLeft(sessionIds)
  }, 90_000)

  it('with its log reader gone (EPIPE): serves on, then SIGTERM leaves no browser, exit 0', async () => {
    const head = spawn('head', ['-n', '1'], { stdio: ['pipe', 'pipe', 'ignore'] })
    let firstLine = ''
    head.stdout.on('data', (chunk) => (firstLine += String(chunk)))
    const headExited = new Promise((resolve) => head.once('exit', resolve))
    const service = spawnService('node', env, { stdout: head.stdin })
    head.stdin.destroy()
    await within(headExited, 30_000, 'the reader exited')
    const { url } = JSON.parse(firstLine) as { url: string }
    // Started after the reader left: every line they log meets the broken pipe.
    const { sessionIds, closed } = await sessionsShowingQr(url, ['w3'])

    service.child.kill('SIGTERM')
    expect(await within(closed, STOP_WITHIN_MS, 'sockets closed')).toEqual([1001])
    expect(await within(service.exited, STOP_WITHIN_MS, 'the service exited')).toEqual<Exit>({
      code: 0,
      signal: null,
    })
    expectNoBrowserLeft(sessionIds)
    expect(service.stderr.join('\n')).toContain('EPIPE')
  }, 90_000)

  it('an exception nothing catches: every browser stopped, exit 1', async () => {
    const preload = new URL('../fixtures/uncaught-exception.mjs', import.meta.url).href
    const service = spawnService('node', { ...env, NODE_OPTIONS: `--import=${preload}` })
    const { url } = await listening(service)
    const { sessionIds, closed } = await sessionsShowingQr(url, ['w4'])

    service.child.kill('SIGUSR2')
    expect(await within(closed, STOP_WITHIN_MS, 'sockets closed')).toEqual([1001])
    expect(await within(service.exited, STOP_WITHIN_MS, 'the service exited')).toEqual<Exit>({
      code: 1,
      signal: null,
    })
    expect(cleanedSessions(service.lines)).toEqual(sessionIds.map(sessionTag))
    expectNoBrowserLeft(sessionIds)
  }, 90_000)
})

/** Whether this machine lets a test mount a tmpfs in a mount namespace of its own (root). */
function canMountTmpfs(): boolean {
  const probe = spawnSync('unshare', ['-m', 'sh', '-c', 'mount -t tmpfs -o size=64k tmpfs /mnt'], {
    stdio: 'ignore',
  })
  return probe.status === 0
}

/**
 * The service (`node dist/main.js`) in a mount namespace of its own, with DATA_DIR on a tmpfs of
 * `size`, filled to the last byte first when `full`.
 */
function serviceOnSmallDisk(size: string, full: boolean) {
  const smallDataDir = mkdtempSync(join(dataDir, 'small-'))
  const fill = full ? 'dd if=/dev/zero of="$DATA_DIR/fill" bs=4k 2>/dev/null; ' : ''
  const script = `mount -t tmpfs -o size=${size} tmpfs "$DATA_DIR" && ${fill}exec "$@"`
  const service = spawnService(['unshare', '-m', 'sh', '-c', script, 'sh', ...NODE_COMMAND], {
    ...env,
    DATA_DIR: smallDataDir,
  })
  return { service, smallDataDir }
}

describe.skipIf(!canMountTmpfs())('a full disk under DATA_DIR (issue 16)', () => {
  it('at start: the service refuses to start, naming DATA_DIR and ENOSPC', async () => {
    const { service, smallDataDir } = serviceOnSmallDisk('256k', true)
    expect(await within(service.exited, 20_000, 'the service exited')).toEqual<Exit>({
      code: 1,
      signal: null,
    })
    expect(service.stderr.join('\n')).toContain(
      `DATA_DIR: ${smallDataDir}/wwebjs cannot be written (ENOSPC: no space left on device`
    )
  }, 30_000)

  it('while running: a session start fails at once, saying why; with space again, sessions work', async () => {
    // Room for the store's file and its write-ahead log besides a profile, once the filler goes.
    const { service, smallDataDir } = serviceOnSmallDisk('8m', false)
    const { url, pid } = await listening(service)
    // The campaign is known to the store first: with the disk full, its owner could not be
    // recorded, and a new campaign is refused with 503 store_unavailable before any session.
    await startSessions(url, token, ['w5'])
    await fetch(`${url}/api/campaigns/w5/cleanup-session`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}` },
    })
    // Fill the service's disk, seen through its own mount namespace.
    const filler = `/proc/${pid}/root${smallDataDir}/fill`
    expect(() => writeFileSync(filler, Buffer.alloc(16 * 1024 * 1024))).toThrow(/ENOSPC/)
    const unrecorded = await fetch(`${url}/api/campaigns/w6/qr-code`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}` },
    })
    expect(unrecorded.status).toBe(503)
    expect(((await unrecorded.json()) as { error: { code: string } }).error.code).toBe(
      'store_unavailable'
    )

    const [failed] = await startSessions(url, token, ['w5'])
    const connection = async () => {
      const answer = await fetch(`${url}/api/campaigns/w5/connection`, {
        headers: { Authorization: `Bearer ${token}` },
      })
      return (await answer.json()) as {
        sessionId: string
        status: string
        history: Array<{ detail?: string }>
      }
    }
    let ended = await connection()
    // A bound for the wait, not a timing claim: on a loaded 2-core machine 10 s was too short once.
    const deadline = Date.now() + 30_000
    while (ended.status !== 'cleaned' && ended.status !== 'failed' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      ended = await connection()
    }
    expect(ended.status, 'the session ended').toMatch(/^(cleaned|failed)$/)
    expect(ended.sessionId).toBe(failed)
    const details = ended.history.map((entry) => entry.detail).filter(Boolean)
    expect(details[0]).toContain(`DATA_DIR: ${smallDataDir}/wwebjs cannot be written (ENOSPC`)
    expect(processesOf(failed!, dataDir)).toEqual([])

    rmSync(filler)
    const { sessionIds, closed } = await sessionsShowingQr(url, ['w5'])
    service.child.kill('SIGTERM')
    expect(await within(closed, STOP_WITHIN_MS, 'sockets closed')).toEqual([1001])
    expect(await within(service.exited, STOP_WITHIN_MS, 'the service exited')).toEqual<Exit>({
      code: 0,
      signal: null,
    })
    expectNoBrowserLeft(sessionIds)
  }, 90_000)
})
