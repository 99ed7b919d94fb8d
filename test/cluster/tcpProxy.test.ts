/**
 * The TCP proxy the cluster tests cut a node's database link with (./support/tcpProxy.ts), against
 * a real echo server and against PostgreSQL's own client.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import pg from 'pg'
import { startTcpProxy, type TcpProxy } from './support/tcpProxy.ts'

let echo: Server | undefined
let proxy: TcpProxy | undefined
const clients = new Set<Socket>()
const upstreamSockets = new Set<Socket>()

afterEach(async () => {
  for (const client of clients) client.destroy()
  clients.clear()
  await proxy?.close()
  proxy = undefined
  for (const socket of upstreamSockets) socket.destroy()
  upstreamSockets.clear()
  await new Promise((resolve) => (echo ? echo.close(resolve) : resolve(undefined)))
  echo = undefined
})

async function startEcho(): Promise<number> {
  echo = createServer((socket) => {
    upstreamSockets.add(socket)
    socket.on('close', () => upstreamSockets.delete(socket))
    socket.on('error', () => {})
    socket.pipe(socket)
  })
  await new Promise<void>((resolve) => echo!.listen(0, '127.0.0.1', resolve))
  const address = echo.address()
  return typeof address === 'object' && address ? address.port : 0
}

/** A client of the proxy; resolves once connected (or ended), with what it reads and how it ended. */
async function client(port: number) {
  const socket = connect(port, '127.0.0.1')
  clients.add(socket)
  let received = ''
  socket.on('data', (data) => (received += data.toString()))
  const ended = new Promise<string>((resolve) => {
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'))
    socket.once('close', () => resolve('closed'))
  })
  // A refused connection may be reset before its 'connect' is seen: then it has ended.
  await Promise.race([new Promise((resolve) => socket.once('connect', resolve)), ended])
  return { socket, received: () => received, ended }
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe('tcpProxy', () => {
  it('pipes both ways to its target', async () => {
    proxy = await startTcpProxy({ host: '127.0.0.1', port: await startEcho() })
    const one = await client(proxy.port)
    one.socket.write('hello')
    await until(() => one.received() === 'hello', 'the echo')
    expect(proxy.connectionCount()).toBe(1)
  })

  it('cut() resets every connection, upstream too, and refuses new ones until restore()', async () => {
    proxy = await startTcpProxy({ host: '127.0.0.1', port: await startEcho() })
    const one = await client(proxy.port)
    one.socket.write('x')
    await until(() => one.received() === 'x', 'the echo')
    proxy.cut()
    expect(await one.ended).toBe('ECONNRESET')
    await until(() => upstreamSockets.size === 0, 'the upstream side closed')
    expect(proxy.connectionCount()).toBe(0)

    const refused = await client(proxy.port)
    expect(await refused.ended).toBe('ECONNRESET')
    expect(refused.received()).toBe('')

    proxy.restore()
    const again = await client(proxy.port)
    again.socket.write('back')
    await until(() => again.received() === 'back', 'the echo after restore()')
  })

  it('stall() lets nothing through, new connections hang, restore() resets them', async () => {
    proxy = await startTcpProxy({ host: '127.0.0.1', port: await startEcho() })
    const one = await client(proxy.port)
    proxy.stall()
    one.socket.write('lost')
    const hanging = await client(proxy.port)
    hanging.socket.write('lost too')
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(one.received()).toBe('')
    expect(hanging.received()).toBe('')
    expect(proxy.connectionCount()).toBe(2)

    proxy.restore()
    expect(await one.ended).toBe('ECONNRESET')
    expect(await hanging.ended).toBe('ECONNRESET')
    const again = await client(proxy.port)
    again.socket.write('back')
    await until(() => again.received() === 'back', 'the echo after restore()')
  })

  it('close() ends everything and stops listening', async () => {
    proxy = await startTcpProxy({ host: '127.0.0.1', port: await startEcho() })
    const { port } = proxy
    const one = await client(port)
    await proxy.close()
    proxy = undefined
    expect(await one.ended).toBe('ECONNRESET')
    const socket = connect(port, '127.0.0.1')
    clients.add(socket)
    const error = await new Promise<NodeJS.ErrnoException>((resolve) =>
      socket.once('error', resolve)
    )
    expect(error.code).toBe('ECONNREFUSED')
  })

  it('a pg client through a cut proxy fails at once, not at its connect timeout', async () => {
    // The PostgreSQL protocol is only bytes to the proxy: an echo server stands in for the
    // handshake failing; what matters is that the pg client's error is immediate, not a timeout.
    proxy = await startTcpProxy({ host: '127.0.0.1', port: await startEcho() })
    proxy.cut()
    const pgClient = new pg.Client({
      connectionString: `postgres://x@127.0.0.1:${proxy.port}/x`,
      connectionTimeoutMillis: 5_000,
    })
    const startedAt = Date.now()
    await expect(pgClient.connect()).rejects.toThrow()
    expect(Date.now() - startedAt).toBeLessThan(1_000)
  })
})
