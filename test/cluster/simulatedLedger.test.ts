/**
 * The simulated engine's ledger (`ledger: true`, src/engines/simulatedLedger.ts): the records the
 * cluster tests check "never two live engines for one campaign" with. A start line before the
 * session does anything, a stop line once it is gone (its stop done, a crash, the process exiting),
 * one each per session, nothing else.
 */
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { EngineEvent } from '../../src/engines/engine.ts'
import { createSimulatedEngine, type SimulatedEngine } from '../../src/engines/simulated.ts'
import { simulatedLedgerRoot, type LedgerLine } from '../../src/engines/simulatedLedger.ts'
import { ROOT } from '../support/service.ts'
import { parseLedger } from './support/ledger.ts'

const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms)

let dataDir: string
beforeEach(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-sim-ledger-'))
})
afterEach(() => {
  vi.useRealTimers()
  rmSync(dataDir, { recursive: true, force: true })
})

function ledgerOf(campaignId: string): LedgerLine[] {
  const file = join(simulatedLedgerRoot(dataDir), `${campaignId}.jsonl`)
  return existsSync(file) ? parseLedger(readFileSync(file, 'utf8')) : []
}

function run(engine: SimulatedEngine, campaignId = 'spring-sale', sessionId = 's1') {
  const events: EngineEvent[] = []
  const session = engine.createSession({ campaignId, sessionId, onEvent: (e) => events.push(e) })
  session.start()
  return { session, events }
}

describe('the simulated engine’s ledger', () => {
  it('writes a start when the session starts and a stop once its teardown is over', async () => {
    vi.useFakeTimers({ now: 1_000_000 })
    const engine = createSimulatedEngine({ dataDir, ledger: true, nodeId: 'node-a' })
    const { session } = run(engine)
    expect(ledgerOf('spring-sale')).toEqual([
      { event: 'start', node: 'node-a', pid: process.pid, sessionId: 's1', at: 1_000_000 },
    ])
    await advance(1_000)
    const stopping = session.stop()
    await advance(10)
    // Still tearing down (20 ms): still live.
    expect(ledgerOf('spring-sale')).toHaveLength(1)
    await advance(10)
    await stopping
    expect(ledgerOf('spring-sale')[1]).toEqual({
      event: 'stop',
      node: 'node-a',
      pid: process.pid,
      sessionId: 's1',
      at: 1_001_020,
      how: 'stopped',
    })
    // Stopping again writes nothing more.
    await session.stop()
    expect(ledgerOf('spring-sale')).toHaveLength(2)
  })

  it('a forced stop (hanging teardown) is recorded once killed, not before', async () => {
    vi.useFakeTimers({ now: 0 })
    const engine = createSimulatedEngine({
      dataDir,
      ledger: true,
      destroyTimeoutMs: 300,
      killDelayMs: 10,
    })
    engine.setBehaviour('spring-sale', { teardown: 'hang' })
    const { session } = run(engine)
    const stopping = session.stop()
    await advance(309)
    expect(ledgerOf('spring-sale').map((line) => line.event)).toEqual(['start'])
    await advance(1)
    expect((await stopping).forced).toBe(true)
    expect(ledgerOf('spring-sale').map((line) => [line.event, line.at])).toEqual([
      ['start', 0],
      ['stop', 310],
    ])
  })

  it('records a crash as the end at once; the stop after it writes nothing more', async () => {
    vi.useFakeTimers({ now: 0 })
    const engine = createSimulatedEngine({ dataDir, ledger: true })
    const { session } = run(engine)
    await advance(500)
    expect(engine.crash('spring-sale')).toBe(true)
    expect(ledgerOf('spring-sale').at(-1)).toMatchObject({ event: 'stop', at: 500, how: 'crashed' })
    const stopping = session.stop()
    await advance(20)
    await stopping
    expect(ledgerOf('spring-sale')).toHaveLength(2)
  })

  it('keeps a logged-out session live until its stop (its browser still runs until then)', async () => {
    vi.useFakeTimers({ now: 0 })
    const engine = createSimulatedEngine({ dataDir, ledger: true })
    const { session } = run(engine)
    await advance(400)
    engine.scan('spring-sale')
    await advance(600)
    expect(engine.disconnect('spring-sale')).toBe(true)
    expect(ledgerOf('spring-sale').map((line) => line.event)).toEqual(['start'])
    const stopping = session.stop()
    await advance(20)
    await stopping
    expect(ledgerOf('spring-sale').map((line) => line.event)).toEqual(['start', 'stop'])
  })

  it('keeps one file per campaign, two lines per session, whatever happens between', async () => {
    vi.useFakeTimers({ now: 0 })
    const engine = createSimulatedEngine({ dataDir, ledger: true })
    for (let index = 0; index < 5; index++) {
      const { session } = run(engine, 'spring-sale', `s${index}`)
      await advance(20_000 * 3)
      const stopping = session.stop()
      await advance(20)
      await stopping
    }
    const other = run(engine, 'autumn', 'o1')
    const lines = ledgerOf('spring-sale')
    expect(lines.map((line) => `${line.event} ${line.sessionId}`)).toEqual(
      ['s0', 's1', 's2', 's3', 's4'].flatMap((id) => [`start ${id}`, `stop ${id}`])
    )
    expect(ledgerOf('autumn')).toHaveLength(1)
    const closing = engine.close()
    await advance(20)
    await closing
    expect(ledgerOf('autumn').map((line) => line.event)).toEqual(['start', 'stop'])
    void other
  })

  it('writes nothing without `ledger: true`, and refuses a ledger without a data directory', async () => {
    vi.useFakeTimers({ now: 0 })
    const engine = createSimulatedEngine({ dataDir })
    const { session } = run(engine)
    const stopping = session.stop()
    await advance(20)
    await stopping
    expect(existsSync(simulatedLedgerRoot(dataDir))).toBe(false)
    expect(() => createSimulatedEngine({ ledger: true })).toThrow(/data directory/)
  })

  it('names the node by NODE_ID, else by the process id', async () => {
    vi.useFakeTimers({ now: 0 })
    vi.stubEnv('NODE_ID', 'node-z')
    try {
      run(createSimulatedEngine({ dataDir, ledger: true }), 'a')
      vi.stubEnv('NODE_ID', '')
      run(createSimulatedEngine({ dataDir, ledger: true }), 'b')
    } finally {
      vi.unstubAllEnvs()
    }
    expect(ledgerOf('a')[0]!.node).toBe('node-z')
    expect(ledgerOf('b')[0]!.node).toBe(String(process.pid))
  })

  it('when the process exits with sessions running, each gets its stop (how: exit)', async () => {
    // A real process: the engine starts two sessions, then the process exits.
    const script = `
      import { createSimulatedEngine } from './src/engines/simulated.ts'
      const engine = createSimulatedEngine({ dataDir: process.env.DIR, ledger: true, nodeId: 'node-x' })
      for (const id of ['a', 'b']) engine.createSession({ campaignId: id, sessionId: id, onEvent() {} }).start()
      setTimeout(() => process.exit(3), 50)
    `
    const code = await new Promise<number | null>((resolve) => {
      const child = execFile(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '--eval', script],
        { cwd: ROOT, env: { ...process.env, DIR: dataDir } },
        () => resolve(child.exitCode)
      )
    })
    expect(code).toBe(3)
    for (const id of ['a', 'b']) {
      expect(ledgerOf(id).map((line) => [line.event, line.node, line.how])).toEqual([
        ['start', 'node-x', undefined],
        ['stop', 'node-x', 'exit'],
      ])
    }
  }, 30_000)
})
