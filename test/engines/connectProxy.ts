/**
 * A tiny HTTP CONNECT proxy for the engine tests: it tunnels to the stand-in for WhatsApp Web,
 * counts the tunnels it carries, and may require credentials (`407` until the client sends them).
 */
import { createServer, type Server } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'

export interface ConnectProxy {
  /** `http://127.0.0.1:<port>` */
  url: string
  /** Tunnels opened to the target. */
  tunnels(): number
  /** CONNECTs refused for missing or wrong credentials (each answered 407). */
  authRefusals(): number
  close(): Promise<void>
}

/**
 * @example
 * const proxy = await startConnectProxy({ targetPort: standIn.port, credentials: { username: 'ann', password: 'pw' } })
 */
export async function startConnectProxy({
  targetPort,
  credentials,
}: {
  /** Where every tunnel to web.whatsapp.com:443 goes (the stand-in, on 127.0.0.1). */
  targetPort: number
  credentials?: { username: string; password: string }
}): Promise<ConnectProxy> {
  let tunnels = 0
  let authRefusals = 0
  const sockets = new Set<Socket>()
  const expected = credentials
    ? `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`
    : undefined
  const server: Server = createServer((_request, response) => {
    response.writeHead(405).end()
  })
  server.on('connect', (request, client: Socket, head: Buffer) => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => client.destroy())
    if (expected !== undefined && request.headers['proxy-authorization'] !== expected) {
      authRefusals++
      client.end(
        'HTTP/1.1 407 Proxy Authentication Required\r\n' +
          'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
      )
      return
    }
    if (request.url !== 'web.whatsapp.com:443') {
      client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n')
      return
    }
    tunnels++
    const upstream = connect(targetPort, '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      if (head.length > 0) upstream.write(head)
      upstream.pipe(client)
      client.pipe(upstream)
    })
    sockets.add(upstream)
    upstream.on('close', () => sockets.delete(upstream))
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    tunnels: () => tunnels,
    authRefusals: () => authRefusals,
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
