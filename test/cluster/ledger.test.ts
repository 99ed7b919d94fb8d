/**
 * The cluster tests' invariant checker (./support/ledger.ts) on hand-written ledgers: it must find
 * every overlap of two engines of one campaign, and nothing else.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, appendFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { simulatedLedgerRoot } from '../../src/engines/simulatedLedger.ts'
import {
  ledgerViolations,
  LedgerWatch,
  parseLedger,
  type Freeze,
  type LedgerFacts,
  type LedgerLine,
} from './support/ledger.ts'

const A = { node: 'node-a', pid: 100 }
const B = { node: 'node-b', pid: 200 }
const C = { node: 'node-c', pid: 300 }

function start(who: { node: string; pid: number }, sessionId: string, at: number): LedgerLine {
  return { event: 'start', ...who, sessionId, at }
}
function stop(who: { node: string; pid: number }, sessionId: string, at: number): LedgerLine {
  return { event: 'stop', ...who, sessionId, at, how: 'stopped' }
}

function check(
  lines: LedgerLine[],
  {
    kills = new Map<number, number>(),
    freezes = [] as Freeze[],
    graceMs = 1_100,
    now = 1_000_000,
  }: Partial<LedgerFacts> = {}
) {
  return ledgerViolations(new Map([['spring-sale', lines]]), { kills, freezes, graceMs, now })
}

describe('ledgerViolations', () => {
  it('finds two engines of one campaign on two nodes at once, and names both', () => {
    const violations = check([start(A, 's1', 1_000), start(B, 's2', 1_500), stop(A, 's1', 2_000)])
    expect(violations).toHaveLength(1)
    expect(violations[0]).toMatchObject({ kind: 'overlap', campaignId: 'spring-sale' })
    expect(violations[0]!.intervals.map((i) => i.sessionId)).toEqual(['s1', 's2'])
    expect(violations[0]!.message).toContain('node-a')
    expect(violations[0]!.message).toContain('node-b')
  })

  it('finds two running engines (no stop yet) at once', () => {
    expect(check([start(A, 's1', 1_000), start(B, 's2', 1_001)])).toHaveLength(1)
  })

  it('finds two engines of one campaign on one node at once', () => {
    const violations = check([start(A, 's1', 1_000), start(A, 's2', 1_500)])
    expect(violations.map((v) => v.kind)).toEqual(['overlap'])
  })

  it('accepts adjacent intervals (one stops at the millisecond the next starts)', () => {
    const lines = [
      start(A, 's1', 1_000),
      stop(A, 's1', 2_000),
      start(B, 's2', 2_000),
      stop(B, 's2', 3_000),
      start(C, 's3', 3_000),
    ]
    expect(check(lines)).toEqual([])
  })

  it('keeps campaigns apart: one engine each at once is fine', () => {
    const ledgers = new Map([
      ['a', [start(A, 's1', 1_000)]],
      ['b', [start(B, 's2', 1_000)]],
    ])
    const facts = { kills: new Map(), freezes: [], graceMs: 1_100, now: 5_000 }
    expect(ledgerViolations(ledgers, facts)).toEqual([])
  })

  it('ends a killed node’s open intervals at the kill: a takeover after it is fine', () => {
    const lines = [start(A, 's1', 1_000), start(B, 's2', 6_000)]
    expect(check(lines, { kills: new Map([[A.pid, 5_000]]) })).toEqual([])
  })

  it('still finds a takeover that started before the kill', () => {
    const lines = [start(A, 's1', 1_000), start(B, 's2', 4_000)]
    const violations = check(lines, { kills: new Map([[A.pid, 5_000]]) })
    expect(violations.map((v) => v.kind)).toEqual(['overlap'])
    expect(violations[0]!.intervals[0]).toMatchObject({ endedBy: 'kill', end: 5_000 })
  })

  it('a kill of another pid ends nothing', () => {
    const lines = [start(A, 's1', 1_000), start(B, 's2', 6_000)]
    expect(check(lines, { kills: new Map([[C.pid, 5_000]]) })).toHaveLength(1)
  })

  describe('frozen windows (SIGSTOP … SIGCONT of a node)', () => {
    const freeze: Freeze = { pid: A.pid, from: 2_000, to: 10_000 }

    it('an engine of a frozen node is not live while frozen: a takeover meanwhile is fine', () => {
      const lines = [start(A, 's1', 1_000), start(B, 's2', 8_000), stop(A, 's1', 10_500)]
      expect(check(lines, { freezes: [freeze] })).toEqual([])
    })

    it('while still frozen, its open engine is not live either', () => {
      const lines = [start(A, 's1', 1_000), start(B, 's2', 8_000)]
      expect(check(lines, { freezes: [{ ...freeze, to: Infinity }], now: 60_000 })).toEqual([])
    })

    it('an engine that outlives the grace after SIGCONT is late, and overlaps past the grace', () => {
      const lines = [start(A, 's1', 1_000), start(B, 's2', 8_000), stop(A, 's1', 11_500)]
      const violations = check(lines, { freezes: [freeze], graceMs: 1_100 })
      expect(violations.map((v) => v.kind).sort()).toEqual(['late_stop', 'overlap'])
      const overlap = violations.find((v) => v.kind === 'overlap')!
      expect(overlap.message).toContain(new Date(11_100).toISOString())
    })

    it('a woken engine still running past the grace is late by now', () => {
      const lines = [start(A, 's1', 1_000), start(B, 's2', 8_000)]
      const facts = { freezes: [freeze], graceMs: 1_100 }
      expect(check(lines, { ...facts, now: 11_000 })).toEqual([])
      expect(check(lines, { ...facts, now: 11_200 }).map((v) => v.kind)).toContain('late_stop')
    })

    it('the grace excuses only a takeover made while frozen, not one after SIGCONT', () => {
      const lines = [start(A, 's1', 1_000), start(B, 's2', 10_200), stop(A, 's1', 10_500)]
      expect(check(lines, { freezes: [freeze] }).map((v) => v.kind)).toEqual(['overlap'])
    })

    it('an overlap before the freeze is still one', () => {
      const lines = [start(A, 's1', 1_000), start(B, 's2', 1_500), stop(A, 's1', 10_500)]
      expect(check(lines, { freezes: [freeze] }).map((v) => v.kind)).toContain('overlap')
    })

    it('a freeze of another node excuses nothing', () => {
      const lines = [start(A, 's1', 1_000), start(B, 's2', 8_000), stop(A, 's1', 10_500)]
      const other = { ...freeze, pid: C.pid }
      expect(check(lines, { freezes: [other] }).map((v) => v.kind)).toEqual(['overlap'])
    })

    it('an engine of a campaign nobody took over may run on after SIGCONT', () => {
      const lines = [start(A, 's1', 1_000)]
      expect(check(lines, { freezes: [freeze], now: 60_000 })).toEqual([])
    })
  })

  it('reports a stop without its start and a second start of one session', () => {
    const violations = check([stop(A, 's0', 500), start(A, 's1', 1_000), start(A, 's1', 1_200)])
    expect(violations.map((v) => v.kind)).toEqual(['malformed', 'malformed'])
  })
})

describe('parseLedger', () => {
  it('leaves out a last line still being written', () => {
    const text = `${JSON.stringify(start(A, 's1', 1))}\n{"event":"st`
    expect(parseLedger(text)).toEqual([start(A, 's1', 1)])
  })
})

describe('LedgerWatch', () => {
  let dataDir: string | undefined
  let watch: LedgerWatch | undefined
  afterEach(() => {
    try {
      watch?.stop()
    } catch {
      // The test looked at the violation already.
    }
    if (dataDir) rmSync(dataDir, { recursive: true, force: true })
  })

  it('re-reads the ledgers as they grow and rejects `failure` at the first overlap', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-ledger-'))
    const root = simulatedLedgerRoot(dataDir)
    mkdirSync(root, { recursive: true })
    const file = join(root, 'spring-sale.jsonl')
    const line = (entry: LedgerLine) => `${JSON.stringify(entry)}\n`
    writeFileSync(file, line(start(A, 's1', Date.now())))
    watch = new LedgerWatch(dataDir, 1_100, 20).start()
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(watch.checks).toBeGreaterThan(1)
    expect(() => watch!.throwIfViolated()).not.toThrow()

    const failed = watch.failure.catch((error: Error) => error)
    const startedAt = Date.now()
    appendFileSync(file, line(start(B, 's2', Date.now())))
    const error = await failed
    expect(Date.now() - startedAt).toBeLessThan(1_000)
    expect(error.message).toMatch(/ledger invariant broken \(overlap\).*node-a.*node-b/)
    expect(() => watch!.throwIfViolated()).toThrow(/overlap/)
  })

  it('is told of kills and freezes', () => {
    dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-ledger-'))
    const root = simulatedLedgerRoot(dataDir)
    mkdirSync(root, { recursive: true })
    const now = Date.now()
    const lines = [start(A, 's1', now - 10_000), start(B, 's2', now - 5_000)]
    writeFileSync(join(root, 'x.jsonl'), lines.map((l) => `${JSON.stringify(l)}\n`).join(''))
    watch = new LedgerWatch(dataDir, 1_100)
    watch.killedAt(A.pid, now - 6_000)
    expect(() => watch!.stop()).not.toThrow()
    expect(
      watch
        .intervals()
        .get('x')!
        .map((i) => i.endedBy)
    ).toEqual(['kill', 'running'])
  })
})
