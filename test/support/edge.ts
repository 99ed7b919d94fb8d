/**
 * Edge test support: the real service (simulated engine, short deadlines) on 127.0.0.1 port 0,
 * tokens signed like `npm run token` does, and WebSocket clients that queue what they receive so a
 * test waits on messages, never on fixed sleeps. Everything opened here is closed by `closeAll()`.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WebSocket, type ClientOptions } from 'ws'
import { signToken } from '../../scripts/token.ts'
import { loadConfig } from '../../src/config.ts'
import type { SimulatedEngine } from '../../src/engines/simulated.ts'
import { silentLogger } from '../../src/logger.ts'
import { startServer, type RunningServer, type StartServerOptions } from '../../src/server.ts'
import { responseChecker, type Answer, type OpenApiDocument } from './openapi.ts'

/** Parsed JSON answers and messages: tests read their fields as the contract names them. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any

export const SECRET = 'test-secret-that-is-long-enough-for-hs256!'

/** Short deadlines so that timeouts happen within a test. */
export const FAST_ENV: Record<string, string> = {
  WA_ENGINE: 'simulated',
  PORT: '0',
  HOST: '127.0.0.1',
  JWT_SECRET: SECRET,
  SIM_QR_DELAY_MS: '20',
  SIM_QR_ROTATE_MS: '20000',
  INIT_TIMEOUT_MS: '2000',
  SCAN_TIMEOUT_MS: '5000',
  AUTH_TIMEOUT_MS: '5000',
  DESTROY_TIMEOUT_MS: '500',
  KILL_TIMEOUT_MS: '200',
  LOG_LEVEL: 'silent',
}

export interface TestServer extends RunningServer {
  simulator: SimulatedEngine
  wsUrl: string
}

const servers = new Set<TestServer>()
const sockets = new Set<TestSocket>()
/** The DATA_DIRs made for servers that were given none; removed by `closeAll()`. */
const dataDirs = new Set<string>()

/**
 * Starts the real service with `FAST_ENV` and the given overrides, in a DATA_DIR of its own (its
 * SQLite store and saved logins) unless `env` names one.
 */
export async function startTestServer(
  env: Record<string, string> = {},
  options: StartServerOptions = {}
): Promise<TestServer> {
  let dataDir = env.DATA_DIR
  if (!dataDir) {
    dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-edge-'))
    dataDirs.add(dataDir)
  }
  const running = await startServer(loadConfig({ ...FAST_ENV, DATA_DIR: dataDir, ...env }), {
    logger: silentLogger,
    ...options,
  })
  const server: TestServer = {
    ...running,
    simulator: running.engine as SimulatedEngine,
    wsUrl: `${running.url.replace('http', 'ws')}/ws/campaigns`,
  }
  servers.add(server)
  return server
}

/** Closes every socket and server opened by this module. */
export async function closeAll(): Promise<void> {
  for (const socket of sockets) socket.ws.terminate()
  sockets.clear()
  await Promise.all([...servers].map((server) => server.close()))
  servers.clear()
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true })
  dataDirs.clear()
}

export function tokenFor(
  sub: string,
  options: { admin?: boolean; campaigns?: string[]; ttlSeconds?: number; secret?: string } = {}
): Promise<string> {
  return signToken({ secret: SECRET, sub, ...options })
}

/** Each server's own OpenAPI document, as a checker of answers (fetched once, on first use). */
const checkers = new WeakMap<TestServer, Promise<(answer: Answer) => void>>()

function checkerFor(server: TestServer): Promise<(answer: Answer) => void> {
  let checker = checkers.get(server)
  if (checker === undefined) {
    checker = fetch(`${server.url}/openapi.json`)
      .then((response) => response.json() as Promise<OpenApiDocument>)
      .then(responseChecker)
    checkers.set(server, checker)
  }
  return checker
}

/**
 * `fetch` against the server with an optional bearer token; JSON bodies are serialized. Every
 * answer is checked against the server's OpenAPI document (path, method, status, body schema): an
 * answer the document does not describe fails the test.
 */
export async function api(
  server: TestServer,
  method: string,
  path: string,
  {
    token,
    body,
    headers = {},
  }: { token?: string; body?: unknown; headers?: Record<string, string> } = {}
): Promise<{ status: number; headers: Headers; json: Json; bytes: Buffer }> {
  const check = await checkerFor(server)
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  })
  const bytes = Buffer.from(await response.arrayBuffer())
  const text = bytes.toString('utf8')
  const contentType = response.headers.get('content-type')
  // An image (`qr.png`) is checked as the document's binary string; its bytes are in `bytes`.
  const isJson = contentType === null || contentType.startsWith('application/json')
  const json: Json = !text ? null : isJson ? JSON.parse(text) : text
  check({ method, path, status: response.status, contentType, body: json })
  return { status: response.status, headers: response.headers, json, bytes }
}

export interface Message {
  type: string
  [field: string]: Json
}

export class TestSocket {
  readonly messages: Message[] = []
  readonly closed: Promise<{ code: number; reason: string }>
  private waiters: Array<() => void> = []

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.messages.push(JSON.parse(data.toString()) as Message)
      for (const wake of this.waiters.splice(0)) wake()
    })
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() })
        for (const wake of this.waiters.splice(0)) wake()
      })
    })
  }

  send(message: unknown): void {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message))
  }

  /** Waits for the first message (received since `from`) that matches; fails after `timeoutMs`. */
  async next(
    predicate: (message: Message) => boolean,
    { timeoutMs = 5000, from = 0 }: { timeoutMs?: number; from?: number } = {}
  ): Promise<Message> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = this.messages.slice(from).find(predicate)
      if (found) return found
      if (this.ws.readyState === WebSocket.CLOSED) {
        throw new Error(
          `socket closed; received ${JSON.stringify(this.messages.map((m) => m.type))}`
        )
      }
      const remaining = deadline - Date.now()
      if (remaining <= 0) {
        throw new Error(
          `no matching message within ${timeoutMs} ms; received ${JSON.stringify(this.messages)}`
        )
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }

  close(): void {
    this.ws.close()
  }
}

/** Opens a WebSocket and resolves once it is open (rejects if the upgrade is refused). */
export function openSocket(
  server: TestServer,
  {
    token,
    query = '',
    options = {},
  }: { token?: string; query?: string; options?: ClientOptions } = {}
): Promise<TestSocket> {
  const search = token ? `?token=${encodeURIComponent(token)}` : query
  const ws = new WebSocket(`${server.wsUrl}${search}`, options)
  const socket = new TestSocket(ws)
  sockets.add(socket)
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(socket))
    ws.once('unexpected-response', (_request, response) => {
      reject(new UpgradeRefused(response.statusCode ?? 0, response.headers['www-authenticate']))
      ws.terminate()
    })
    ws.once('error', reject)
  })
}

export class UpgradeRefused extends Error {
  constructor(
    readonly status: number,
    readonly wwwAuthenticate: string | undefined
  ) {
    super(`upgrade refused with ${status}`)
  }
}

/** Waits until `check()` is true, polling; for state that has no event to wait on. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  { timeoutMs = 5000, intervalMs = 10 }: { timeoutMs?: number; intervalMs?: number } = {}
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
