/**
 * A TCP proxy between one node and the database, so a test can cut that node off: it listens on
 * 127.0.0.1 port 0 and pipes every connection to `target`.
 *
 * - `cut()`: every connection is reset and new ones are refused (accepted, then reset at once),
 *   as a link that fails loudly looks to the node.
 * - `stall()`: nothing goes through any more, in either direction, and new connections are
 *   accepted but never answered, as a link that drops packets silently looks (the node's queries
 *   hang until its own timeouts).
 * - `restore()`: stalled connections are reset and new ones are piped again.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'

export interface TcpProxy {
  /** The port it listens on (127.0.0.1). */
  port: number
  /** Connections piped now. */
  connectionCount(): number
  /** Destroys every connection and refuses new ones. */
  cut(): void
  /** Forwards nothing any more, in either direction; new connections hang. */
  stall(): void
  /** Resets stalled connections; accepts and pipes new connections again. */
  restore(): void
  /** Cuts everything and stops listening. */
  close(): Promise<void>
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>()
  /** Clients accepted while stalled: held, never answered. */
  const held = new Set<Socket>()
  let mode: 'open' | 'cut' | 'stalled' = 'open'
  const server: Server = createServer((client) => {
    if (mode === 'cut') {
      client.resetAndDestroy()
      return
    }
    if (mode === 'stalled') {
      client.pause()
      held.add(client)
      client.on('error', () => {})
      client.on('close', () => held.delete(client))
      return
    }
    const upstream = connect(target.port, target.host)
    const pair: [Socket, Socket] = [client, upstream]
    pairs.add(pair)
    const end = () => {
      if (!pairs.delete(pair)) return
      client.destroy()
      upstream.destroy()
    }
    for (const socket of pair) {
      socket.on('error', end)
      socket.on('close', end)
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('the proxy has no port')

  const resetAll = () => {
    for (const pair of [...pairs]) {
      pairs.delete(pair)
      // A reset, as a dropped network link looks to a client that writes next.
      pair[0].resetAndDestroy()
      pair[1].destroy()
    }
    for (const client of [...held]) client.resetAndDestroy()
    held.clear()
  }
  const cut = () => {
    mode = 'cut'
    resetAll()
  }
  return {
    port: address.port,
    connectionCount: () => pairs.size + held.size,
    cut,
    stall: () => {
      mode = 'stalled'
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream)
        upstream.unpipe(client)
        client.pause()
        upstream.pause()
      }
    },
    restore: () => {
      if (mode === 'stalled') resetAll()
      mode = 'open'
    },
    close: () => {
      cut()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}
