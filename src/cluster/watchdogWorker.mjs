/**
 * The watchdog's worker thread (see watchdog.ts): kills the browsers of campaigns whose lease
 * this node can no longer prove while the main thread runs no JavaScript.
 *
 * Plain JavaScript so that it runs in a worker thread without a TypeScript loader (under `tsx`,
 * vitest or plain node alike). It never renews a lease and never touches the database: all it
 * can do is kill. It writes with `writeSync` on a file descriptor, because a worker's
 * `process.stderr` is relayed by the main thread, which is exactly the thread that is stuck.
 *
 * Protocol, in: `{ type: 'watch', campaignId, deadlineMs, pids }`, `{ type: 'unwatch',
 * campaignId }`. Out: `{ type: 'killed', campaignIds }`, `{ type: 'error', message }`. Messages
 * out wait in the main thread's queue until its event loop runs again.
 *
 * @module
 */
import { readFileSync, writeSync } from 'node:fs'
import { setInterval } from 'node:timers'
import { parentPort, workerData } from 'node:worker_threads'

/**
 * @typedef {{ heartbeat: SharedArrayBuffer, blockedAfterMs: number, pollMs: number, logFd: number }} WatchdogWorkerData
 * @typedef {{ deadlineMs: number, pids: number[] }} Watched
 */

const { heartbeat, blockedAfterMs, pollMs, logFd } = /** @type {WatchdogWorkerData} */ (workerData)
/** The main thread's last beat, in `process.hrtime` nanoseconds. */
const lastBeat = new BigInt64Array(heartbeat)
/** @type {Map<string, Watched>} */
const watched = new Map()
const ownProcessGroup = processGroupOf(process.pid) ?? process.pid

const port = /** @type {import('node:worker_threads').MessagePort} */ (parentPort)
port.on('message', (message) => {
  if (message.type === 'watch') {
    watched.set(message.campaignId, { deadlineMs: message.deadlineMs, pids: message.pids })
  } else if (message.type === 'unwatch') {
    watched.delete(message.campaignId)
  }
})
setInterval(() => {
  try {
    poll()
  } catch (error) {
    report(40, 'watchdog: a check failed', { err: String(error) })
    port.postMessage({ type: 'error', message: String(error) })
  }
}, pollMs)

function poll() {
  const now = process.hrtime.bigint()
  const blockedForMs = Number(now - Atomics.load(lastBeat, 0)) / 1e6
  // A main thread that beats fences its leases itself (the lease keeper): never second-guess it.
  if (blockedForMs < blockedAfterMs) return
  const nowMs = Number(now) / 1e6
  /** @type {string[]} */
  const killed = []
  for (const [campaignId, { deadlineMs, pids }] of watched) {
    if (nowMs < deadlineMs) continue
    for (const pid of pids) kill(pid)
    // Once: the pids are dead now, and a pid killed twice may have been reused meanwhile.
    watched.delete(campaignId)
    killed.push(campaignId)
    report(
      50,
      "watchdog: main thread blocked past a lease's fencing deadline; killed its browser",
      {
        campaignId,
        pids,
        blockedForMs: Math.round(blockedForMs),
      }
    )
  }
  if (killed.length > 0) port.postMessage({ type: 'killed', campaignIds: killed })
}

/**
 * SIGKILLs a browser's process group (when it leads one: Chromium's children are in it) and the
 * process itself. Pids 0 and 1, this process and its group are refused.
 *
 * @param {number} pid
 */
function kill(pid) {
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid || pid === ownProcessGroup) return
  const group = processGroupOf(pid)
  // A group keeps its leader's id while any member lives, and no new process takes that id
  // meanwhile: with the leader already gone, the group left under its id is still its browser's.
  if (group === pid || group === undefined) sendKill(-pid)
  sendKill(pid)
}

/** @param {number} target */
function sendKill(target) {
  try {
    process.kill(target, 'SIGKILL')
  } catch (error) {
    // ESRCH: gone already.
    if (/** @type {NodeJS.ErrnoException} */ (error).code !== 'ESRCH') throw error
  }
}

/**
 * The process group of a process, from /proc; undefined if it is gone.
 *
 * @param {number} pid
 * @returns {number | undefined}
 */
function processGroupOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(fields[2])
  } catch {
    return undefined
  }
}

/**
 * One JSON line, shaped like the service's pino lines.
 *
 * @param {number} level
 * @param {string} msg
 * @param {Record<string, unknown>} fields
 */
function report(level, msg, fields) {
  const line = { level, time: Date.now(), service: 'qrvisor', ...fields, msg }
  try {
    writeSync(logFd, `${JSON.stringify(line)}\n`)
  } catch {
    // Nowhere to write (a closed descriptor): the kill itself is what matters.
  }
}
