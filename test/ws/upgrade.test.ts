/**
 * Issue 8, item 1: one WebSocket upgrade that the service refuses, closed by the client with a TCP
 * reset, ended the process (an 'error' event on the socket that nothing handled), and so did a
 * client that sent the upgrade and went away without reading, after about a hundred tries.
 *
 * The service runs in a child process (test/fixtures/serve.ts), so that such a crash ends the
 * child and fails the test here instead of taking the test runner down.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { connect } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { signToken } from '../../scripts/token.ts'
import { FAST_ENV, SECRET, type Json } from '../support/edge.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const children = new Set<ChildProcess>()

afterEach(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
  children.clear()
})

interface Service {
  child: ChildProcess
  url: string
  port: number
  output: string[]
  exited: Promise<number | null>
}

async function startService(env: Record<string, string>): Promise<Service> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/serve.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...FAST_ENV, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  const output: string[] = []
  createInterface({ input: child.stdout! }).on('line', (line) => output.push(line))
  createInterface({ input: child.stderr! }).on('line', (line) => output.push(line))
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  const deadline = Date.now() + 15_000
  for (;;) {
    const listening = output.find((line) => line.includes('"msg":"listening"'))
    if (listening) {
      const url = (JSON.parse(listening) as { url: string }).url
      return { child, url, port: Number(new URL(url).port), output, exited }
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the service did not start: ${output.join('\n')}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

type Ending = 'reset' | 'abandon' | 'resetLater'

/**
 * Sends an upgrade request and ends the connection as a hostile client would: a TCP reset right
 * after the request, a close without reading the answer, or a reset a moment later (while a
 * token is being verified).
 */
function upgradeAndVanish(port: number, path: string, ending: Ending): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    socket.once('close', () => resolve())
    socket.once('connect', () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
          'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'
      )
      if (ending === 'reset') socket.resetAndDestroy()
      else if (ending === 'abandon') socket.destroy()
      else setTimeout(() => socket.resetAndDestroy(), 1)
    })
  })
}

/**
 * `count` upgrades of each path with each ending, `concurrency` at a time (a client's connection
 * is open once the kernel accepts it, so the storm outpaces the server whatever the concurrency).
 */
async function storm(port: number, paths: string[], count: number, concurrency = 8) {
  const jobs: Array<() => Promise<void>> = []
  for (let i = 0; i < count; i++) {
    for (const path of paths) {
      for (const ending of ['reset', 'abandon', 'resetLater'] as const) {
        jobs.push(() => upgradeAndVanish(port, path, ending))
      }
    }
  }
  const workers = Array.from({ length: concurrency }, async () => {
    for (let job = jobs.shift(); job; job = jobs.shift()) await job()
  })
  await Promise.all(workers)
}

/** A subscriber of one session that counts its QR codes. */
async function watchQrStream(service: Service, token: string) {
  const headers = { Authorization: `Bearer ${token}` }
  const started = await fetch(`${service.url}/api/campaigns/live/qr-code`, {
    method: 'POST',
    headers,
  })
  const { sessionId } = (await started.json()) as { sessionId: string }
  const ws = new WebSocket(`${service.url.replace('http', 'ws')}/ws/campaigns`, { headers })
  const qrAttempts: number[] = []
  ws.on('message', (data) => {
    const message = JSON.parse(data.toString()) as Json
    if (message.type === 'qr_code') qrAttempts.push(message.attempt as number)
  })
  await new Promise((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  })
  ws.send(JSON.stringify({ type: 'subscribe', sessionId }))
  return {
    ws,
    qrAttempts,
    async nextQr(): Promise<number> {
      const seen = qrAttempts.length
      const deadline = Date.now() + 5000
      while (qrAttempts.length === seen) {
        if (Date.now() > deadline || ws.readyState !== WebSocket.OPEN) {
          throw new Error(`the QR stream stopped after ${JSON.stringify(qrAttempts)}`)
        }
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      return qrAttempts.at(-1)!
    },
  }
}

async function expectStillServing(service: Service) {
  expect(service.child.exitCode, service.output.join('\n')).toBeNull()
  const health = await fetch(`${service.url}/healthz`)
  expect(health.status).toBe(200)
}

describe('refused upgrades reset or abandoned by the client (issue 8, item 1)', () => {
  it('never end the process: /healthz answers and a live session keeps its QR stream', async () => {
    const service = await startService({
      INSPECT: 'true',
      WS_REQUIRE_TOKEN: 'true',
      SIM_QR_ROTATE_MS: '200',
      SCAN_TIMEOUT_MS: '120000',
    })
    const alice = await signToken({ secret: SECRET, sub: 'alice' })
    const restrictedAdmin = await signToken({
      secret: SECRET,
      sub: 'ops',
      admin: true,
      campaigns: ['zz'],
    })
    const expired = await signToken({ secret: SECRET, sub: 'alice', ttlSeconds: -60 })
    const stream = await watchQrStream(service, alice)
    const before = await stream.nextQr()

    await storm(
      service.port,
      [
        // Not WebSocket endpoints: served as HTTP, with and without a token.
        '/nope',
        `/nope?token=${alice}`,
        '/metrics',
        // The inspector: no token, a bad one, a non-admin, an admin restricted to campaigns.
        '/ws/inspect',
        '/ws/inspect?token=garbage',
        `/ws/inspect?token=${alice}`,
        `/ws/inspect?token=${restrictedAdmin}`,
        // WS_REQUIRE_TOKEN: no token, a bad one, an expired one; and an accepted upgrade.
        '/ws/campaigns',
        '/ws/campaigns?token=garbage',
        `/ws/campaigns?token=${expired}`,
        `/ws/campaigns?token=${alice}`,
      ],
      40
    )

    await expectStillServing(service)
    expect(stream.ws.readyState).toBe(WebSocket.OPEN)
    expect(await stream.nextQr()).toBeGreaterThan(before)
    stream.ws.close()
    service.child.kill('SIGTERM')
    expect(await service.exited).toBe(0)
  })

  it('never end the process with the inspector off, where /ws/inspect is an ordinary path', async () => {
    const service = await startService({})
    const admin = await signToken({ secret: SECRET, sub: 'root', admin: true })
    await storm(
      service.port,
      ['/ws/inspect', `/ws/inspect?token=${admin}`, '/ws/campaigns?token=garbage', '/healthz'],
      100
    )
    await expectStillServing(service)
    service.child.kill('SIGTERM')
    expect(await service.exited).toBe(0)
  })
})
