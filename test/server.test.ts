/**
 * The runnable service as `npm start` runs it, in a child process: it starts from the environment,
 * refuses a bad configuration naming the variable, and on SIGTERM with live sessions and sockets
 * stops every engine, closes the sockets with 1001 and exits 0.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'
import { afterEach, describe, expect, it } from 'vitest'
import { signToken } from '../scripts/token.ts'
import { sessionTag } from '../src/sessionTag.ts'
import { FAST_ENV, SECRET, type Json } from './support/edge.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const children = new Set<ChildProcess>()

afterEach(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
  children.clear()
})

interface Service {
  child: ChildProcess
  url: string
  lines: Json[]
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

function run(env: Record<string, string>): {
  child: ChildProcess
  lines: Json[]
  stderr: string[]
} {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  const lines: Json[] = []
  const stderr: string[] = []
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line))
    } catch {
      lines.push({ msg: line })
    }
  })
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line))
  return { child, lines, stderr }
}

async function startService(env: Record<string, string> = {}): Promise<Service> {
  const { child, lines } = run({ ...FAST_ENV, LOG_LEVEL: 'info', ...env })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal }))
  )
  const deadline = Date.now() + 15_000
  for (;;) {
    const listening = lines.find((line) => line.msg === 'qrvisor is listening')
    if (listening) return { child, url: listening.url as string, lines, exited }
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the service did not start: ${JSON.stringify(lines)}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

function openSubscribedSocket(
  url: string,
  sessionId: string
): Promise<{ closed: Promise<number> }> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/ws/campaigns`)
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
  return new Promise((resolve, reject) => {
    ws.once('error', reject)
    ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', sessionId })))
    ws.on('message', (data) => {
      if (JSON.parse(data.toString()).type === 'qr_code') resolve({ closed })
    })
  })
}

describe('npm start (src/server.ts in a child process)', () => {
  it('stops every engine, closes sockets with 1001 and exits 0 on SIGTERM', async () => {
    const service = await startService({ DESTROY_TIMEOUT_MS: '300', KILL_TIMEOUT_MS: '100' })
    const token = await signToken({ secret: SECRET, sub: 'alice' })
    const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }
    // One campaign whose engine teardown hangs, so the shutdown has to kill it.
    await fetch(`${service.url}/api/simulator/campaigns/stuck/behaviour`, {
      method: 'PUT',
      headers,
      body: JSON.stringify({ teardown: 'hang' }),
    })
    const sessionIds: string[] = []
    for (const campaignId of ['a', 'b', 'c', 'stuck']) {
      const answer = await fetch(`${service.url}/api/campaigns/${campaignId}/qr-code`, {
        method: 'POST',
        headers,
      })
      sessionIds.push(((await answer.json()) as { sessionId: string }).sessionId)
    }
    const sockets = await Promise.all(sessionIds.map((id) => openSubscribedSocket(service.url, id)))

    service.child.kill('SIGTERM')
    const closeCodes = await Promise.all(sockets.map((socket) => socket.closed))
    const { code, signal } = await service.exited

    expect(closeCodes).toEqual([1001, 1001, 1001, 1001])
    expect({ code, signal }).toEqual({ code: 0, signal: null })
    const cleaned = service.lines
      .filter((line) => line.msg === 'session status' && line.status === 'cleaned')
      .map((line) => line.session)
    expect(cleaned.sort()).toEqual(sessionIds.map((id) => sessionTag(id)).sort())
    expect(service.lines.some((line) => line.msg === 'shut down cleanly')).toBe(true)
    // Tokens and QR texts never reach the log.
    const log = JSON.stringify(service.lines)
    expect(log).not.toContain(token)
    expect(log).not.toContain('2@')
  })

  it('logs a promise rejection nobody handles, and keeps serving', async () => {
    const preload = new URL('./fixtures/loose-rejection.mjs', import.meta.url).href
    const service = await startService({ NODE_OPTIONS: `--import=${preload}` })
    service.child.kill('SIGUSR2')
    const deadline = Date.now() + 5_000
    while (!service.lines.some((line) => line.msg === 'unhandled promise rejection (ignored)')) {
      if (Date.now() > deadline || service.child.exitCode !== null) break
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(service.lines.some((line) => line.msg === 'unhandled promise rejection (ignored)')).toBe(
      true
    )
    expect((await fetch(`${service.url}/healthz`)).status).toBe(200)
    service.child.kill('SIGTERM')
    expect(await service.exited).toEqual({ code: 0, signal: null })
  })

  it('refuses to start with a bad variable, naming it', async () => {
    const { child, stderr } = run({ ...FAST_ENV, SCAN_TIMEOUT_MS: 'soon' })
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    expect(code).toBe(1)
    expect(stderr.join('\n')).toMatch(/SCAN_TIMEOUT_MS/)
  })

  it('fails to start, leaving nothing running, when the port is taken', async () => {
    const first = await startService()
    const port = new URL(first.url).port
    const { child, stderr } = run({ ...FAST_ENV, PORT: port })
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    expect(code).not.toBe(0)
    expect(stderr.join('\n')).toMatch(/EADDRINUSE/)
    first.child.kill('SIGTERM')
    expect((await first.exited).code).toBe(0)
  })

  it('refuses to start without a way to verify tokens', async () => {
    const env: Record<string, string> = { ...FAST_ENV }
    delete env.JWT_SECRET
    const { child, stderr } = run(env)
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    expect(code).toBe(1)
    expect(stderr.join('\n')).toMatch(/JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL/)
  })
})
