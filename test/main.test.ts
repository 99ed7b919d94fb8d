/**
 * The service as a process, built and started the way the README says (`npm run build`, then
 * `npm start`, which runs `node dist/main.js`), with the simulated engine: however it is signalled
 * it stops every engine, closes sockets with 1001 and exits 0 (issue 9); a log reader that goes
 * away or a full disk under its output never keeps it from serving or from stopping (issue 16); an
 * exception nothing catches stops it gracefully with exit code 1 (issue 8).
 */
import { spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { createServer } from 'node:net'
import { sessionTag } from '../src/sessionTag.ts'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { signToken } from '../scripts/token.ts'
import { FAST_ENV, SECRET } from './support/edge.ts'
import {
  buildService,
  cleanedSessions,
  isRunning,
  killServices,
  listening,
  spawnService,
  startSessions,
  subscribedSocket,
  waitFor,
  type ServiceProcess,
} from './support/service.ts'

/** Teardowns are short here, so the shutdown bound (DESTROY + KILL + 10 s) is ~10.4 s. */
const ENV = { ...FAST_ENV, LOG_LEVEL: 'info', DESTROY_TIMEOUT_MS: '300', KILL_TIMEOUT_MS: '100' }
/** A graceful stop of this configuration, with generous scheduling slack on a shared machine. */
const STOP_WITHIN_MS = 10_000

let token: string
const headers = () => ({ Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' })

beforeAll(async () => {
  token = await signToken({ secret: SECRET, sub: 'alice' })
  await buildService()
}, 180_000)

afterEach(() => killServices())

/**
 * Live sessions with subscribed sockets, one of them on a campaign whose engine teardown hangs
 * (so the stop must kill it).
 */
async function liveSessions(url: string, campaignIds = ['a', 'b', 'c', 'stuck']) {
  await fetch(`${url}/api/simulator/campaigns/stuck/behaviour`, {
    method: 'PUT',
    headers: headers(),
    body: JSON.stringify({ teardown: 'hang' }),
  })
  const sessionIds = await startSessions(url, token, campaignIds)
  const sockets = await Promise.all(sessionIds.map((id) => subscribedSocket(url, id)))
  return { sessionIds, closed: Promise.all(sockets.map((socket) => socket.closed)) }
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms)
    }),
  ])
}

function messages(service: ServiceProcess): string[] {
  return service.lines.map((line) => line.msg as string)
}

describe('npm start: the built service', () => {
  it('serves the pages, their assets, the API reference and QR images from dist/', async () => {
    const service = spawnService('npm', { ...ENV, INSPECT: 'true' })
    const { url } = await listening(service)
    // The start-up line says where the pages are.
    const started = service.lines.find((line) => line.msg === 'qrvisor is listening')
    expect(started).toMatchObject({ dashboard: `${url}/`, inspector: `${url}/inspect` })
    for (const path of ['/', '/inspect', '/assets/app.css', '/assets/dashboard.js']) {
      expect((await fetch(`${url}${path}`)).status, path).toBe(200)
    }
    const mermaid = await fetch(`${url}/assets/vendor/mermaid/mermaid.esm.min.mjs`)
    expect(mermaid.status).toBe(200)
    // The API reference: its page and script from dist/, Swagger UI from node_modules.
    for (const path of [
      '/docs',
      '/assets/docs.js',
      '/assets/vendor/swagger-ui/swagger-ui-bundle.js',
      '/assets/vendor/swagger-ui/swagger-ui.css',
    ]) {
      expect((await fetch(`${url}${path}`)).status, path).toBe(200)
    }
    const openapi = await fetch(`${url}/openapi.json`)
    expect(((await openapi.json()) as { openapi: string }).openapi).toBe('3.1.0')
    // The QR image comes from the render worker, a file of its own beside its module.
    const [sessionId] = await startSessions(url, token, ['pages'])
    await subscribedSocket(url, sessionId!)
    const connection = await fetch(`${url}/api/campaigns/pages/connection`, { headers: headers() })
    expect(((await connection.json()) as { status: string }).status).toBe('awaitingScan')
    const answer = await fetch(`${url}/api/campaigns/pages/qr-code`, {
      method: 'POST',
      headers: headers(),
    })
    expect(((await answer.json()) as { qrCode: string }).qrCode).toMatch(/^data:image\/png;base64,/)
    service.child.kill('SIGTERM')
    expect(await service.exited).toEqual({ code: 0, signal: null })
  }, 30_000)
})

describe('npm start: a graceful stop however it is signalled (issue 9)', () => {
  const ways: Array<[string, (npmPid: number, nodePid: number) => void]> = [
    ['SIGTERM to npm (a process manager, Docker, CI)', (npm) => process.kill(npm, 'SIGTERM')],
    ['SIGTERM to node', (_, node) => process.kill(node, 'SIGTERM')],
    [
      'SIGINT to the whole process group (Ctrl-C), counted once',
      (npm) => process.kill(-npm, 'SIGINT'),
    ],
  ]

  it.each(ways)(
    '%s: stops every engine, closes sockets with 1001, exits 0',
    async (_, signal) => {
      const service = spawnService('npm', ENV)
      const { url, pid } = await listening(service)
      expect(pid).not.toBe(service.child.pid)
      const { sessionIds, closed } = await liveSessions(url)

      signal(service.child.pid!, pid)
      expect(await within(closed, STOP_WITHIN_MS, 'sockets closed')).toEqual([
        1001, 1001, 1001, 1001,
      ])
      expect(await within(service.exited, STOP_WITHIN_MS, 'npm exited')).toEqual({
        code: 0,
        signal: null,
      })
      expect(isRunning(pid)).toBe(false)
      expect(cleanedSessions(service.lines)).toEqual(sessionIds.map(sessionTag).sort())
      expect(messages(service)).toContain('shut down cleanly')
      expect(messages(service)).not.toContain('second signal: exiting without waiting')
      // Tokens and QR texts never reach the log.
      const log = JSON.stringify(service.lines)
      expect(log).not.toContain(token)
      expect(log).not.toContain('2@')
    },
    30_000
  )

  it('exits at once with 1 on a deliberate second Ctrl-C, after the first stop began', async () => {
    // A teardown that takes its full 8 s bound, so the first stop is still running.
    const service = spawnService('npm', { ...ENV, DESTROY_TIMEOUT_MS: '8000' })
    const { url, pid } = await listening(service)
    await liveSessions(url, ['stuck'])

    process.kill(-service.child.pid!, 'SIGINT')
    await waitFor(() => (messages(service).includes('shutting down') ? true : undefined), 'stop')
    // Past the window in which repeats of one Ctrl-C (terminal, npm) count as the same stop.
    await new Promise((resolve) => setTimeout(resolve, 2_300))
    expect(isRunning(pid)).toBe(true)
    const secondAt = Date.now()
    process.kill(-service.child.pid!, 'SIGINT')
    expect(await within(service.exited, 5_000, 'npm exited')).toEqual({ code: 1, signal: null })
    expect(Date.now() - secondAt).toBeLessThan(3_000)
    expect(isRunning(pid)).toBe(false)
    expect(messages(service)).toContain('second signal: exiting without waiting')
  }, 30_000)

  it.each([
    ['killed (SIGKILL)', 'SIGKILL'],
    ['hung up (SIGHUP, which npm does not forward)', 'SIGHUP'],
  ] as const)(
    'stops gracefully when npm itself is %s',
    async (_, signal) => {
      const service = spawnService('npm', ENV)
      const { url, pid } = await listening(service)
      const { sessionIds, closed } = await liveSessions(url)

      process.kill(service.child.pid!, signal)
      expect(await within(closed, STOP_WITHIN_MS, 'sockets closed')).toEqual([
        1001, 1001, 1001, 1001,
      ])
      await within(service.outputEnded, STOP_WITHIN_MS, 'node exited')
      expect(isRunning(pid)).toBe(false)
      expect(cleanedSessions(service.lines)).toEqual(sessionIds.map(sessionTag).sort())
      expect(messages(service)).toContain('npm, which started the service, is gone: shutting down')
      expect(messages(service)).toContain('shut down cleanly')
    },
    30_000
  )
})

/**
 * `node dist/main.js` with its standard output going to `head -n 1`, which prints the first line
 * (the service's URL) and exits: every later log line meets a pipe nobody reads (EPIPE).
 */
async function behindAnEarlyExitingReader(env: Record<string, string>) {
  const head = spawn('head', ['-n', '1'], { stdio: ['pipe', 'pipe', 'ignore'] })
  let firstLine = ''
  head.stdout.on('data', (chunk) => (firstLine += String(chunk)))
  const headExited = new Promise((resolve) => head.once('exit', resolve))
  const service = spawnService('node', env, { stdout: head.stdin })
  head.stdin.destroy()
  await within(headExited, 20_000, 'the reader exited')
  const { url, pid } = JSON.parse(firstLine) as { url: string; pid: number }
  return { service, url, pid }
}

describe('a log reader that goes away (issue 16)', () => {
  it('with no session live: a signal still stops the service, which exits 0', async () => {
    const { service, url } = await behindAnEarlyExitingReader(ENV)
    expect((await fetch(`${url}/healthz`)).status).toBe(200)

    service.child.kill('SIGTERM')
    expect(await within(service.exited, STOP_WITHIN_MS, 'the service exited')).toEqual({
      code: 0,
      signal: null,
    })
  }, 30_000)

  it('with sessions live: it keeps serving, then stops every engine and exits 0', async () => {
    const { service, url } = await behindAnEarlyExitingReader(ENV)
    // Every line these log meets the broken pipe; the service serves on.
    const campaigns = Array.from({ length: 20 }, (_, index) => `campaign-${index}`)
    const { closed } = await liveSessions(url, [...campaigns, 'stuck'])
    expect((await fetch(`${url}/healthz`)).status).toBe(200)
    const status = await fetch(`${url}/api/campaigns/campaign-3/connection`, {
      headers: headers(),
    })
    expect(((await status.json()) as { status: string }).status).toBe('awaitingScan')

    service.child.kill('SIGTERM')
    const codes = await within(closed, STOP_WITHIN_MS, 'sockets closed')
    expect(codes.every((code) => code === 1001)).toBe(true)
    expect(await within(service.exited, STOP_WITHIN_MS, 'the service exited')).toEqual({
      code: 0,
      signal: null,
    })
    // Noticed once, on standard error, which still has a reader.
    const notes = service.stderr.filter((line) => line.includes('log lines cannot be written'))
    expect(notes).toEqual([
      'qrvisor: log lines cannot be written (EPIPE: nobody reads them any more); the service keeps running.',
    ])
  }, 30_000)

  it('with its output on a full disk (/dev/full): it serves, says so once, and stops cleanly', async () => {
    const port = await freePort()
    const full = openSync('/dev/full', 'w')
    const service = spawnService('node', { ...ENV, PORT: String(port) }, { stdout: full })
    closeSync(full)
    const url = `http://127.0.0.1:${port}`
    await waitFor(
      () => (service.stderr.some((line) => line.includes('ENOSPC')) ? true : undefined),
      'the ENOSPC note'
    )
    const { closed } = await liveSessions(url, ['a', 'b'])
    expect((await fetch(`${url}/healthz`)).status).toBe(200)

    service.child.kill('SIGTERM')
    expect(await within(closed, STOP_WITHIN_MS, 'sockets closed')).toEqual([1001, 1001])
    expect(await within(service.exited, STOP_WITHIN_MS, 'the service exited')).toEqual({
      code: 0,
      signal: null,
    })
    expect(service.stderr.filter((line) => line.includes('log lines cannot be written'))).toEqual([
      'qrvisor: log lines cannot be written (ENOSPC: no space left on device, write); the service keeps running.',
    ])
  }, 30_000)
})

describe('what nothing catches (issue 8)', () => {
  it('an uncaught exception: logged, every engine stopped, sockets closed, exit code 1', async () => {
    const preload = new URL('./fixtures/uncaught-exception.mjs', import.meta.url).href
    const service = spawnService('node', { ...ENV, NODE_OPTIONS: `--import=${preload}` })
    const { url } = await listening(service)
    const { sessionIds, closed } = await liveSessions(url)

    service.child.kill('SIGUSR2')
    expect(await within(closed, STOP_WITHIN_MS, 'sockets closed')).toEqual([1001, 1001, 1001, 1001])
    expect(await within(service.exited, STOP_WITHIN_MS, 'the service exited')).toEqual({
      code: 1,
      signal: null,
    })
    const fatal = service.lines.find((line) => line.msg === 'uncaught exception: shutting down')
    expect(fatal).toMatchObject({ level: 60, err: { message: 'a bug nothing catches' } })
    expect(cleanedSessions(service.lines)).toEqual(sessionIds.map(sessionTag).sort())
  }, 30_000)

  it('a promise rejection nobody handles: logged, and the service keeps serving', async () => {
    const preload = new URL('./fixtures/loose-rejection.mjs', import.meta.url).href
    const service = spawnService('node', { ...ENV, NODE_OPTIONS: `--import=${preload}` })
    const { url } = await listening(service)
    service.child.kill('SIGUSR2')
    await waitFor(
      () =>
        messages(service).includes('unhandled promise rejection (ignored)') ? true : undefined,
      'the rejection logged'
    )
    expect((await fetch(`${url}/healthz`)).status).toBe(200)
    service.child.kill('SIGTERM')
    expect(await service.exited).toEqual({ code: 0, signal: null })
  }, 30_000)
})

describe('a start that cannot succeed', () => {
  it('refuses a bad variable, naming it', async () => {
    const service = spawnService('node', { ...ENV, SCAN_TIMEOUT_MS: 'soon' })
    expect((await service.exited).code).toBe(1)
    expect(service.stderr.join('\n')).toMatch(/SCAN_TIMEOUT_MS/)
  })

  it('refuses a duration no timer can wait, naming it', async () => {
    const service = spawnService('node', { ...ENV, SCAN_TIMEOUT_MS: '9999999999' })
    expect((await service.exited).code).toBe(1)
    expect(service.stderr.join('\n')).toMatch(/SCAN_TIMEOUT_MS must be at most 2147483647/)
  })

  it('refuses to start without a way to verify tokens', async () => {
    const env: Record<string, string> = { ...ENV }
    delete env.JWT_SECRET
    const service = spawnService('node', env)
    expect((await service.exited).code).toBe(1)
    expect(service.stderr.join('\n')).toMatch(/JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL/)
  })

  it('fails, leaving nothing running, when the port is taken', async () => {
    const first = spawnService('node', ENV)
    const { url } = await listening(first)
    const second = spawnService('node', { ...ENV, PORT: new URL(url).port })
    expect((await second.exited).code).toBe(1)
    expect(second.stderr.join('\n')).toMatch(/EADDRINUSE/)
    first.child.kill('SIGTERM')
    expect((await first.exited).code).toBe(0)
  }, 30_000)
})

/** A port nobody listens on right now (for a service whose log cannot say where it listens). */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}
