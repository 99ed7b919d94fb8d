/**
 * One failover of the cluster (issue 12) with the real engine: two node processes on one
 * throwaway PostgreSQL and one shared DATA_DIR, each running a real Chromium sent to the local
 * stand-in for web.whatsapp.com (test/engines/support.ts). A campaign linked on node-a; node-a
 * dies with its browser (`kill -9` of its process group and of its browser's, as a machine that
 * loses power); node-b restores the campaign from the saved login on the shared disk, ready
 * without a scan.
 *
 * The invariant, sampled from /proc every 100 ms throughout: never two browsers carrying the
 * campaign's mark (`--qrvisor-campaign=<id>`, the browser process of a session) alive at once. A
 * sample can miss an overlap shorter than its period; the lease design makes any overlap last at
 * least a lease TTL, which it cannot miss.
 */
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startPostgres, type PostgresServer } from '../store/postgresServer.ts'
import {
  chromiumForTests,
  killEverythingUnder,
  startStandIn,
  type StandIn,
} from '../engines/support.ts'
import { str, TestCluster } from './support/cluster.ts'

const LEASE_TTL_MS = 8_000
const KILL_TIMEOUT_MS = 1_000

function hasPostgres(): boolean {
  if (process.env.TEST_DATABASE_URL) return true
  const base = '/usr/lib/postgresql'
  return (
    existsSync(base) &&
    readdirSync(base).some((version) => existsSync(join(base, version, 'bin', 'postgres')))
  )
}

interface Browser {
  pid: number
  pgid: number
  sessionId: string
}

/**
 * The live browser processes of the campaign (the ones carrying its mark) whose profile is under
 * `dataDir` (another test run on this machine may run a campaign of the same name), from /proc.
 */
function browsersOf(campaignId: string, dataDir: string): Browser[] {
  const mark = `--qrvisor-campaign=${campaignId}`
  const profile = `--user-data-dir=${dataDir}/`
  const found: Browser[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')
      if (!args.includes(mark) || !args.some((arg) => arg.startsWith(profile))) continue
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (fields[0] === 'Z') continue
      const session = args.find((arg) => arg.startsWith('--qrvisor-session=')) ?? ''
      found.push({
        pid: Number(entry),
        pgid: Number(fields[2]),
        sessionId: session.slice('--qrvisor-session='.length),
      })
    } catch {
      // Gone meanwhile.
    }
  }
  return found
}

/** Samples `browsersOf` every 100 ms; keeps the first sample with browsers of two sessions. */
function browserSampler(campaignId: string, dataDir: string) {
  let samples = 0
  let overlap: Browser[] | undefined
  const timer = setInterval(() => {
    samples++
    const browsers = browsersOf(campaignId, dataDir)
    // One browser is several processes (its zygotes carry its marks too): count sessions.
    const sessions = new Set(browsers.map((browser) => browser.sessionId))
    if (sessions.size > 1 && overlap === undefined) overlap = browsers
  }, 100)
  return {
    samples: () => samples,
    overlap: () => overlap,
    stop: () => clearInterval(timer),
  }
}

describe.skipIf(!hasPostgres())('a cluster of two nodes on the wwebjs engine', () => {
  let postgres: PostgresServer
  let whatsapp: StandIn
  let cluster: TestCluster | undefined
  let env: Record<string, string>

  beforeAll(async () => {
    postgres = await startPostgres()
    whatsapp = await startStandIn('whatsapp')
  }, 60_000)

  afterEach(async () => {
    await cluster?.close()
    cluster = undefined
  }, 60_000)

  afterAll(async () => {
    await whatsapp?.close()
    await postgres?.stop()
  }, 60_000)

  it('kill -9 of the node running a linked campaign (its browser dies with it): the other node restores it ready from the shared DATA_DIR, never two browsers at once', async () => {
    cluster = await TestCluster.create(postgres)
    const c = cluster
    c.onClose(() => void killEverythingUnder(c.dataDir))
    // The nodes start this as their Chromium: the real one, sent to the stand-in.
    const browser = join(c.dataDir, 'chromium-with-stand-in')
    writeFileSync(
      browser,
      `#!/bin/sh\nexec ${chromiumForTests()} ${whatsapp.chromiumArgs.map((arg) => `'${arg}'`).join(' ')} "$@"\n`
    )
    chmodSync(browser, 0o755)
    env = {
      WA_ENGINE: 'wwebjs',
      CHROME_PATH: browser,
      INIT_TIMEOUT_MS: '30000',
      AUTH_TIMEOUT_MS: '30000',
      DESTROY_TIMEOUT_MS: '2000',
      KILL_TIMEOUT_MS: String(KILL_TIMEOUT_MS),
      LEASE_TTL_MS: String(LEASE_TTL_MS),
      MAX_SESSIONS: '2',
    }
    await Promise.all(['node-a', 'node-b'].map((id) => c.start(id, { env })))
    const campaignId = 'real-failover'
    const sampler = browserSampler(campaignId, c.dataDir)
    try {
      const injected = whatsapp.nextSignal('injected')
      const started = await c.requestSession('node-a', campaignId)
      expect(started.status, str(started.body)).toBe(202)
      await c.connectionWhen(
        'node-a',
        campaignId,
        (v) => v.status === 'awaitingScan',
        'the QR',
        30_000
      )
      await injected
      const helpersInjected = whatsapp.nextSignal('helpers-injected')
      whatsapp.sendToPhone('synced')
      await helpersInjected
      whatsapp.sendToPhone('synced')
      const linked = await c.connectionWhen(
        'node-a',
        campaignId,
        (v) => v.status === 'ready',
        'ready',
        30_000
      )
      expect(linked.node).toBe('node-a')
      // The scan linked the device: WhatsApp knows it from now on (a restore needs no scan).
      whatsapp.rememberDevice()
      const before = browsersOf(campaignId, c.dataDir)
      expect(before.length, 'the browser, found by its mark and profile').toBeGreaterThan(0)
      expect([...new Set(before.map((b) => b.sessionId))]).toEqual([linked.sessionId])

      // What a failover restores is what the store says is linked (written behind, within
      // STORE_WRITE_LAG_MS of the ready): a power loss inside that window loses the link's flag.
      await c.untilStoredLinked([campaignId])
      // Power loss: the node and its browser at once.
      const killedAt = Date.now()
      await c.kill('node-a')
      for (const { pgid } of before) {
        try {
          process.kill(-pgid, 'SIGKILL')
        } catch {
          // Gone with the node already.
        }
      }

      const restored = await c.connectionWhen(
        'node-b',
        campaignId,
        (v) => v.status === 'ready' && v.sessionId !== linked.sessionId,
        'restored ready on node-b',
        LEASE_TTL_MS + 60_000
      )
      console.log(
        `[cluster] wwebjs failover: ready on node-b ${Date.now() - killedAt} ms after kill -9`
      )
      expect(restored.node).toBe('node-b')
      // No scan on node-b: its history never showed a QR.
      expect(restored.history.map((h: { status: string }) => h.status)).not.toContain(
        'awaitingScan'
      )
      expect([...new Set(browsersOf(campaignId, c.dataDir).map((b) => b.sessionId))]).toEqual([
        restored.sessionId,
      ])
    } finally {
      sampler.stop()
    }
    expect(sampler.samples()).toBeGreaterThan(50)
    expect(sampler.overlap(), 'two browsers of the campaign alive at once').toBeUndefined()
  }, 180_000)
})
