/**
 * Test support for the real engine: a stand-in for web.whatsapp.com, a /proc inspector that
 * knows nothing of the engine's own helpers (so it can prove them wrong), and a clean-up that
 * kills every Chromium a test file started.
 *
 * @module
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { findChromium, chromiumNotFoundMessage } from '../../src/engines/wwebjs/chromium.ts'
import type { EngineEvent } from '../../src/engines/engine.ts'
import { fakeWhatsAppPage, type PageSignal, type PhoneCommand } from './fakeWhatsApp.ts'

/** The browser the engine tests drive; the tests fail with this message when there is none. */
export function chromiumForTests(): string {
  const found = findChromium(process.env)
  if (!found) {
    throw new Error(`The real-engine tests need Chromium. ${chromiumNotFoundMessage(process.env)}`)
  }
  return found
}

/** Chromium flags for "there is no network": every host name fails to resolve at once. */
export const NO_NETWORK_ARGS = ['--host-resolver-rules=MAP * ~NOTFOUND']

export type StandInBehaviour =
  /** The page loads, but never becomes WhatsApp (initialize() waits for WhatsApp's code). */
  | 'blank'
  /** The page never finishes loading: a script it needs is never answered (initialize() hangs). */
  | 'stall'
  /** A fake WhatsApp Web waiting for a scan (see fakeWhatsApp.ts): whatsapp-web.js emits `qr`. */
  | 'whatsapp'

export interface StandIn {
  port: number
  /** Chromium flags that send web.whatsapp.com to this server. */
  chromiumArgs: string[]
  /** How many times the page itself has been requested so far. */
  pageRequests(): number
  /** Resolves at the next request for the page itself (proof that a browser is up and loading). */
  nextPageRequest(): Promise<void>
  /** Resolves when a fake WhatsApp page next reports this step (see fakeWhatsApp.ts). */
  nextSignal(signal: PageSignal): Promise<void>
  /** How many times fake WhatsApp pages have reported this step so far. */
  signalCount(signal: PageSignal): number
  /** The query of the last report of this step (`pairing-code` carries `phone=`), if any. */
  lastSignalQuery(signal: PageSignal): URLSearchParams | undefined
  /** Leaves the pages' reports of this step unanswered from now on: the step hangs in the page. */
  holdSignal(signal: PageSignal): void
  /** Plays the phone on every fake WhatsApp page connected now (behaviour 'whatsapp'). */
  sendToPhone(command: PhoneCommand): void
  /**
   * From now on WhatsApp knows the device: pages load linked (no QR, `ready` on their own), as
   * for a session on a saved login.
   */
  rememberDevice(): void
  close(): Promise<void>
}

/**
 * A local HTTPS server standing in for web.whatsapp.com, with a self-signed certificate made
 * for the occasion (openssl must be installed: Node cannot issue X.509 certificates itself).
 */
export async function startStandIn(behaviour: StandInBehaviour): Promise<StandIn> {
  const { key, cert } = selfSignedCertificate()
  const stalled = new Set<ServerResponse>()
  let waiters: Array<() => void> = []
  let pageRequests = 0
  let signalWaiters: Array<{ signal: PageSignal; resolve: () => void }> = []
  const signalCounts = new Map<string, number>()
  const signalQueries = new Map<string, URLSearchParams>()
  const heldSignals = new Set<string>()
  const phones = new Set<ServerResponse>()
  let deviceKnown = false
  const server: Server = createServer({ key, cert }, (request, response) => {
    if (request.url === '/stalled.js') {
      // Never answered: the page's load event never fires.
      stalled.add(response)
      return
    }
    if (request.url?.startsWith('/signal/')) {
      const [signal = '', query] = request.url.slice('/signal/'.length).split('?')
      if (query !== undefined) signalQueries.set(signal, new URLSearchParams(query))
      const ready = signalWaiters.filter((waiter) => waiter.signal === signal)
      signalWaiters = signalWaiters.filter((waiter) => waiter.signal !== signal)
      for (const { resolve } of ready) resolve()
      signalCounts.set(signal, (signalCounts.get(signal) ?? 0) + 1)
      if (heldSignals.has(signal)) stalled.add(response)
      else response.end()
      return
    }
    if (request.url === '/commands') {
      response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' })
      response.write(': connected\n\n')
      phones.add(response)
      response.on('close', () => phones.delete(response))
      return
    }
    if (request.url === '/' || request.url?.startsWith('/?')) {
      pageRequests += 1
      const ready = waiters
      waiters = []
      for (const resolve of ready) resolve()
    }
    response.writeHead(200, { 'content-type': 'text/html' })
    if (behaviour === 'whatsapp') {
      response.end(fakeWhatsAppPage(deviceKnown))
      return
    }
    const script = behaviour === 'stall' ? '<script src="/stalled.js"></script>' : ''
    response.end(`<!doctype html><title>not WhatsApp</title>${script}<p>stand-in</p>`)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    port,
    chromiumArgs: [
      `--host-resolver-rules=MAP web.whatsapp.com 127.0.0.1:${port}, MAP * ~NOTFOUND`,
      '--ignore-certificate-errors',
    ],
    pageRequests: () => pageRequests,
    nextSignal: (signal) => new Promise((resolve) => signalWaiters.push({ signal, resolve })),
    signalCount: (signal) => signalCounts.get(signal) ?? 0,
    lastSignalQuery: (signal) => signalQueries.get(signal),
    holdSignal: (signal) => void heldSignals.add(signal),
    rememberDevice: () => void (deviceKnown = true),
    sendToPhone(command) {
      for (const phone of phones) phone.write(`data: ${command}\n\n`)
    },
    nextPageRequest: () => new Promise((resolve) => waiters.push(resolve)),
    async close() {
      for (const response of [...stalled, ...phones]) response.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

function selfSignedCertificate(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'qrvisor-cert-'))
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=web.whatsapp.com',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' }
    )
    return {
      key: readFileSync(join(dir, 'key.pem'), 'utf8'),
      cert: readFileSync(join(dir, 'cert.pem'), 'utf8'),
    }
  } catch (error) {
    throw new Error(`The stand-in for web.whatsapp.com needs openssl to make a certificate`, {
      cause: error,
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

export interface ProcessRecord {
  pid: number
  pgid: number
  state: string
  cmdline: string
}

function readProc(pid: string): ProcessRecord | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return {
      pid: Number(pid),
      state: fields[0] ?? '',
      pgid: Number(fields[2]),
      cmdline: readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' '),
    }
  } catch {
    return undefined
  }
}

/** A process's environment as `/proc` shows it (NUL-separated `NAME=value`), or '' once it is gone. */
export function environ(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8')
  } catch {
    return ''
  }
}

function allProcesses(): ProcessRecord[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .flatMap((entry) => readProc(entry) ?? [])
    .filter((record) => record.state !== 'Z' && record.pid !== process.pid)
}

/** The live browser process carrying this session's marker, if any. */
export function markedBrowser(sessionId: string): ProcessRecord | undefined {
  return allProcesses().find((record) => record.cmdline.includes(`--qrvisor-session=${sessionId} `))
}

/**
 * Every live process that could belong to the session: the marked browser, anything naming a
 * profile under `dataDir`, anything whose environment carries the session or the data dir, and
 * anything in the process group of a browser seen earlier (`knownGroups`).
 */
export function processesOf(
  sessionId: string,
  dataDir: string,
  knownGroups: Iterable<number> = []
): ProcessRecord[] {
  const groups = new Set(knownGroups)
  return allProcesses().filter(
    (record) =>
      groups.has(record.pgid) ||
      record.cmdline.includes(`--qrvisor-session=${sessionId} `) ||
      record.cmdline.includes(`--user-data-dir=${dataDir}`) ||
      environ(record.pid).includes(`QRVISOR_SESSION=${sessionId}\0`)
  )
}

/** The Chromium profile lock files left under `dataDir`. */
export function profileLocks(dataDir: string): string[] {
  const root = join(dataDir, 'wwebjs')
  let profiles: string[]
  try {
    profiles = readdirSync(root)
  } catch {
    return []
  }
  return profiles.flatMap((profile) =>
    readdirSync(join(root, profile))
      .filter((name) => name.startsWith('Singleton'))
      .map((name) => join(root, profile, name))
  )
}

/**
 * Kills every process tied to `dataDir` (and its process group): the net under every test, so a
 * failing test never leaves a Chromium running.
 */
export function killEverythingUnder(dataDir: string): number {
  let killed = 0
  for (const record of allProcesses()) {
    const tied =
      record.cmdline.includes(dataDir) ||
      environ(record.pid).includes(`QRVISOR_PROFILE_DIR=${dataDir}`)
    if (!tied) continue
    for (const target of [-record.pgid, record.pid]) {
      try {
        process.kill(target, 'SIGKILL')
        killed += 1
      } catch {
        // Already gone.
      }
    }
  }
  return killed
}

/** Polls (bounded) until `check` holds; returns whether it did. */
export async function eventually(
  check: () => boolean,
  timeoutMs: number,
  pollMs = 20
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (check()) return true
    await new Promise((resolve) => setTimeout(resolve, pollMs))
  }
  return check()
}

/** A fresh data directory for one test file. */
export function makeDataDir(): string {
  return mkdtempSync(join(tmpdir(), 'qrvisor-engine-'))
}

/** Records a session's events and lets a test await the next one of a kind. */
export class EventLog {
  readonly events: Array<EngineEvent & { at: number }> = []
  #waiters: Array<{ type: EngineEvent['type']; resolve: (event: EngineEvent) => void }> = []

  readonly onEvent = (event: EngineEvent): void => {
    this.events.push({ ...event, at: Date.now() })
    const matching = this.#waiters.filter((waiter) => waiter.type === event.type)
    this.#waiters = this.#waiters.filter((waiter) => waiter.type !== event.type)
    for (const waiter of matching) waiter.resolve(event)
  }

  /** The first event of this type, already received or still to come. */
  next<T extends EngineEvent['type']>(type: T): Promise<Extract<EngineEvent, { type: T }>> {
    const seen = this.events.find((event) => event.type === type)
    if (seen) return Promise.resolve(seen as unknown as Extract<EngineEvent, { type: T }>)
    return new Promise((resolve) =>
      this.#waiters.push({ type, resolve: resolve as (event: EngineEvent) => void })
    )
  }

  types(): string[] {
    return this.events.map((event) => event.type)
  }
}

/** Rejects when `ms` pass first: turns an awaited event that never comes into a clear failure. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms)
    }),
  ])
}
