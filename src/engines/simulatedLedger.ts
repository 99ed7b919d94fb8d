/**
 * The simulated engine's ledger, a test aid (on only with `SIM_LEDGER=true` and a data
 * directory): each engine session appends one JSON line to
 * `<dataDir>/simulated/ledger/<campaignId>.jsonl` when it starts running and one when it is really
 * gone, so a test running several service processes on one shared DATA_DIR can check, from the
 * engines' own records, that two engines of one campaign never ran at once.
 *
 * ```json
 * {"event":"start","node":"node-a","pid":4242,"sessionId":"0b6f…","at":1767268800000}
 * {"event":"stop","node":"node-a","pid":4242,"sessionId":"0b6f…","at":1767268801234,"how":"stopped"}
 * ```
 *
 * `at` is the machine's wall clock (`Date.now()`), the one clock every process on the machine
 * shares; a start is written before the session does anything, a stop once nothing of it is left,
 * so the recorded interval always covers the session's life. Bounded by the sessions: two lines
 * per session, nothing else. Each line is one `appendFileSync` (O_APPEND, one small write: whole
 * on a local disk even with several processes appending).
 *
 * @module
 */
import { appendFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { campaignEntry } from './campaignEntry.ts'
import { simulatedLoginsRoot } from './simulatedLogins.ts'

/**
 * Why a session's record ends: `stopped` (its stop finished), `crashed` (it died: nothing of it
 * runs any more), `exit` (the process exits with it still running).
 */
export type LedgerStopKind = 'stopped' | 'crashed' | 'exit'

export interface LedgerLine {
  event: 'start' | 'stop'
  node: string
  pid: number
  sessionId: string
  at: number
  how?: LedgerStopKind
}

export interface SimulatedLedger {
  started(campaignId: string, sessionId: string): void
  stopped(campaignId: string, sessionId: string, how: LedgerStopKind): void
}

/** The directory of the ledgers under DATA_DIR. */
export function simulatedLedgerRoot(dataDir: string): string {
  return join(simulatedLoginsRoot(dataDir), 'ledger')
}

/**
 * The ledger under `dataDir`, its lines naming `node` (the node's id; by default `NODE_ID` or,
 * without one, the process id).
 */
export function simulatedLedger(
  dataDir: string,
  node = process.env.NODE_ID || String(process.pid)
): SimulatedLedger {
  const root = simulatedLedgerRoot(dataDir)
  let made = false
  const append = (campaignId: string, line: LedgerLine) => {
    if (!made) {
      mkdirSync(root, { recursive: true })
      made = true
    }
    appendFileSync(campaignEntry(root, `${campaignId}.jsonl`), `${JSON.stringify(line)}\n`)
  }
  return {
    started(campaignId, sessionId) {
      append(campaignId, { event: 'start', node, pid: process.pid, sessionId, at: Date.now() })
    },
    stopped(campaignId, sessionId, how) {
      append(campaignId, {
        event: 'stop',
        node,
        pid: process.pid,
        sessionId,
        at: Date.now(),
        how,
      })
    },
  }
}
