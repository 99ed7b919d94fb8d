/**
 * A webhook receiver for tests: a real HTTP server on 127.0.0.1, port 0, answering each request
 * as the test says, recording what it received. `close` ends every connection.
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export interface Received {
  headers: IncomingHttpHeaders
  body: string
  /** What the receiver answered (null: it never answered). */
  status: number | null
}

/** Answers a request: a status, or 'hang' to never answer. */
export type Answer = (request: { body: string; index: number }) => number | 'hang'

export async function startReceiver(answer: Answer = () => 200) {
  const received: Received[] = []
  const sockets = new Set<Socket>()
  const hanging = new Set<ServerResponse>()
  let respond = answer
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      const status = respond({ body, index: received.length })
      received.push({ headers: req.headers, body, status: status === 'hang' ? null : status })
      if (status === 'hang') {
        hanging.add(res)
        res.on('close', () => hanging.delete(res))
        return
      }
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status >= 300 ? 'nope' : 'ok')
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/hook`,
    port,
    received,
    /** The bodies answered 2xx, in order. */
    accepted: () => received.filter((r) => r.status !== null && r.status < 300),
    setAnswer(next: Answer) {
      respond = next
    },
    openSockets: () => sockets.size,
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

export type Receiver = Awaited<ReturnType<typeof startReceiver>>

/** Waits until `check` holds, polling (real time); fails after `timeoutMs`. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting for a condition')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
