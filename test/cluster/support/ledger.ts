/**
 * The cluster tests' invariant: never two live engines for one campaign. Read from the engines'
 * own records, the simulated engine's ledger (`SIM_LEDGER=true`: one `start` and one `stop` line
 * per engine session under `<DATA_DIR>/simulated/ledger/<campaignId>.jsonl`, see
 * src/engines/simulatedLedger.ts), plus what only the test knows:
 *
 * - `killedAt(pid, t)`: the node process was killed (`kill -9`): its open intervals end at `t`.
 * - `frozen(pid, from)` … `thawed(pid, to)`: the node's process group was stopped (SIGSTOP, a
 *   frozen container) and continued. While frozen its engines do nothing: not live. After
 *   SIGCONT, an engine of a campaign another node took over meanwhile is excused for a grace
 *   (`KILL_TIMEOUT_MS + 1000`): the woken node needs that long to see its lease lost and kill it;
 *   an engine that outlives the grace is a violation of its own (`late_stop`), and an overlap past
 *   the grace is an overlap.
 *
 * Intervals are closed `[start, end]` in the machine's wall clock (every process shares it);
 * adjacent ones (`end === start`) do not overlap.
 *
 * `LedgerWatch` re-reads the ledgers every ~100 ms during a scenario and fails at the first
 * violation; `ledgerViolations` is the pure check, unit-tested on hand-written ledgers.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { LedgerLine } from '../../../src/engines/simulatedLedger.ts'
import { simulatedLedgerRoot } from '../../../src/engines/simulatedLedger.ts'

export type { LedgerLine }

/** One engine session's life, as its ledger and the test's facts tell it. */
export interface EngineInterval {
  campaignId: string
  node: string
  pid: number
  sessionId: string
  start: number
  /** Its `stop` line, the kill of its process, or `Infinity` while it runs. */
  end: number
  endedBy: 'stop' | 'kill' | 'running'
}

/** A node process group stopped from `from` until `to` (`Infinity` while still stopped). */
export interface Freeze {
  pid: number
  from: number
  to: number
}

export interface LedgerFacts {
  /** Node pids killed with SIGKILL, and when. */
  kills: ReadonlyMap<number, number>
  freezes: readonly Freeze[]
  /** How long after SIGCONT a woken node may still run an engine of a campaign taken over. */
  graceMs: number
  /** The time of the check: an engine still running past its grace is late by now. */
  now: number
}

export interface Violation {
  kind: 'overlap' | 'late_stop' | 'malformed'
  campaignId: string
  message: string
  intervals: EngineInterval[]
}

/** Parses a ledger file's text; a last line without its newline is still being written. */
export function parseLedger(text: string): LedgerLine[] {
  const complete = text.slice(0, text.lastIndexOf('\n') + 1)
  return complete
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as LedgerLine)
}

/** Every campaign's ledger under `dataDir`. */
export function readLedgers(dataDir: string): Map<string, LedgerLine[]> {
  const root = simulatedLedgerRoot(dataDir)
  const ledgers = new Map<string, LedgerLine[]>()
  if (!existsSync(root)) return ledgers
  for (const file of readdirSync(root)) {
    if (!file.endsWith('.jsonl')) continue
    ledgers.set(
      file.slice(0, -'.jsonl'.length),
      parseLedger(readFileSync(join(root, file), 'utf8'))
    )
  }
  return ledgers
}

/** The intervals of one campaign's ledger, closed by the kills the test reports. */
export function intervalsOf(
  campaignId: string,
  lines: readonly LedgerLine[],
  kills: ReadonlyMap<number, number>
): { intervals: EngineInterval[]; malformed: string[] } {
  const open = new Map<string, EngineInterval>()
  const intervals: EngineInterval[] = []
  const malformed: string[] = []
  for (const line of lines) {
    const key = `${line.pid}:${line.sessionId}`
    if (line.event === 'start') {
      if (open.has(key) || intervals.some((i) => `${i.pid}:${i.sessionId}` === key)) {
        malformed.push(`a second start of ${key}`)
        continue
      }
      const interval: EngineInterval = {
        campaignId,
        node: line.node,
        pid: line.pid,
        sessionId: line.sessionId,
        start: line.at,
        end: Infinity,
        endedBy: 'running',
      }
      open.set(key, interval)
      intervals.push(interval)
    } else {
      const interval = open.get(key)
      if (interval === undefined) {
        malformed.push(`a stop of ${key} without its start`)
        continue
      }
      open.delete(key)
      interval.end = line.at
      interval.endedBy = 'stop'
    }
  }
  for (const interval of open.values()) {
    const killedAt = kills.get(interval.pid)
    if (killedAt !== undefined && killedAt >= interval.start) {
      interval.end = killedAt
      interval.endedBy = 'kill'
    }
  }
  return { intervals, malformed }
}

type Segment = [from: number, to: number]

/** `segments` minus `[from, to]`. */
function subtract(segments: Segment[], [from, to]: Segment): Segment[] {
  const result: Segment[] = []
  for (const [start, end] of segments) {
    if (to <= start || from >= end) {
      result.push([start, end])
      continue
    }
    if (start < from) result.push([start, from])
    if (to < end) result.push([to, end])
  }
  return result
}

/**
 * When `interval` ran, as seen by `other`: its life minus its node's frozen windows, minus the
 * grace after a thaw when `other` started while the node was frozen (a takeover it could not
 * know of yet).
 */
function liveSegments(
  interval: EngineInterval,
  other: EngineInterval,
  facts: LedgerFacts
): Segment[] {
  // A running engine has been live until now, not beyond: its future is not an overlap yet.
  let segments: Segment[] = [[interval.start, Math.min(interval.end, facts.now)]]
  for (const freeze of facts.freezes) {
    if (freeze.pid !== interval.pid) continue
    segments = subtract(segments, [freeze.from, freeze.to])
    if (other.pid !== interval.pid && other.start < freeze.to && other.start > interval.start) {
      segments = subtract(segments, [freeze.to, freeze.to + facts.graceMs])
    }
  }
  return segments
}

function overlapOf(a: Segment[], b: Segment[]): Segment | undefined {
  for (const [aFrom, aTo] of a) {
    for (const [bFrom, bTo] of b) {
      const from = Math.max(aFrom, bFrom)
      const to = Math.min(aTo, bTo)
      if (from < to) return [from, to]
    }
  }
  return undefined
}

/** Every violation of "never two live engines for one campaign" in these ledgers. */
export function ledgerViolations(
  ledgers: ReadonlyMap<string, readonly LedgerLine[]>,
  facts: LedgerFacts
): Violation[] {
  const violations: Violation[] = []
  for (const [campaignId, lines] of ledgers) {
    const { intervals, malformed } = intervalsOf(campaignId, lines, facts.kills)
    for (const message of malformed) {
      violations.push({ kind: 'malformed', campaignId, message, intervals: [] })
    }
    for (const [index, first] of intervals.entries()) {
      for (const second of intervals.slice(index + 1)) {
        const overlap = overlapOf(
          liveSegments(first, second, facts),
          liveSegments(second, first, facts)
        )
        if (overlap === undefined) continue
        violations.push({
          kind: 'overlap',
          campaignId,
          message:
            `two live engines of ${campaignId} from ${time(overlap[0])} to ${time(overlap[1])}: ` +
            `${describeInterval(first)} and ${describeInterval(second)}`,
          intervals: [first, second],
        })
      }
    }
    for (const freeze of facts.freezes) {
      if (freeze.to === Infinity) continue
      const deadline = freeze.to + facts.graceMs
      for (const woken of intervals) {
        if (woken.pid !== freeze.pid || woken.start >= freeze.to || woken.end <= freeze.to) continue
        const takeover = intervals.find(
          (other) =>
            other.pid !== freeze.pid && other.start > woken.start && other.start < freeze.to
        )
        if (takeover === undefined) continue
        const late = woken.end === Infinity ? facts.now > deadline : woken.end > deadline
        if (!late) continue
        violations.push({
          kind: 'late_stop',
          campaignId,
          message:
            `${describeInterval(woken)} did not stop within ${facts.graceMs} ms of SIGCONT ` +
            `(${time(freeze.to)}) though ${describeInterval(takeover)} took the campaign over`,
          intervals: [woken, takeover],
        })
      }
    }
  }
  return violations
}

function time(at: number): string {
  return Number.isFinite(at) ? new Date(at).toISOString() : 'now'
}

export function describeInterval(interval: EngineInterval): string {
  const end =
    interval.endedBy === 'running'
      ? 'still running'
      : `${interval.endedBy === 'kill' ? 'killed' : 'stopped'} ${time(interval.end)}`
  return `[${interval.node} pid ${interval.pid} session ${interval.sessionId}: ${time(interval.start)} → ${end}]`
}

/**
 * The invariant checked continuously during a scenario: the ledgers under `dataDir` re-read every
 * `pollMs`; the first violation is kept, `failure` rejects with it, and `throwIfViolated()` /
 * `stop()` throw it.
 */
export class LedgerWatch {
  private readonly kills = new Map<number, number>()
  private readonly freezes: Freeze[] = []
  private timer: NodeJS.Timeout | undefined
  private firstViolation: Error | undefined
  private rejectFailure: (error: Error) => void = () => {}
  /** Rejects at the first violation (never resolves): race a scenario's waits against it. */
  readonly failure: Promise<never>
  /** Checks made so far (a watch that never checked proved nothing). */
  checks = 0

  constructor(
    private readonly dataDir: string,
    private readonly graceMs: number,
    private readonly pollMs = 100
  ) {
    this.failure = new Promise<never>((_, reject) => (this.rejectFailure = reject))
    // Observed here so an unraced failure is not an unhandled rejection; throwIfViolated reports it.
    this.failure.catch(() => {})
  }

  start(): this {
    this.timer ??= setInterval(() => this.check(), this.pollMs)
    return this
  }

  killedAt(pid: number, at = Date.now()): void {
    this.kills.set(pid, at)
  }

  frozen(pid: number, from = Date.now()): void {
    this.freezes.push({ pid, from, to: Infinity })
  }

  thawed(pid: number, to = Date.now()): void {
    const freeze = this.freezes.find((f) => f.pid === pid && f.to === Infinity)
    if (freeze === undefined) throw new Error(`pid ${pid} was not frozen`)
    freeze.to = to
  }

  /** The intervals recorded so far, by campaign. */
  intervals(): Map<string, EngineInterval[]> {
    const result = new Map<string, EngineInterval[]>()
    for (const [campaignId, lines] of readLedgers(this.dataDir)) {
      result.set(campaignId, intervalsOf(campaignId, lines, this.kills).intervals)
    }
    return result
  }

  /** One check now; keeps the first violation. */
  check(): void {
    if (this.firstViolation !== undefined) return
    let violations: Violation[]
    try {
      violations = ledgerViolations(readLedgers(this.dataDir), {
        kills: this.kills,
        freezes: this.freezes,
        graceMs: this.graceMs,
        now: Date.now(),
      })
    } catch (error) {
      violations = [{ kind: 'malformed', campaignId: '?', message: String(error), intervals: [] }]
    }
    this.checks++
    const [first] = violations
    if (first === undefined) return
    this.firstViolation = new Error(`ledger invariant broken (${first.kind}): ${first.message}`)
    this.rejectFailure(this.firstViolation)
  }

  throwIfViolated(): void {
    if (this.firstViolation !== undefined) throw this.firstViolation
  }

  /** Stops polling after a last check; throws the first violation, if any. */
  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.check()
    this.throwIfViolated()
  }
}
