/**
 * Webhook delivery costs, over the SQLite store and a real receiver on 127.0.0.1:
 *
 * 1. A burst: 1,000 `session.status` events emitted at once (one per campaign, and then all of
 *    one campaign, whose lane is sent one at a time), to one receiver answering 200. Delivery
 *    latency p50/p99 from `emit` until the receiver read the request, and the event loop's delay
 *    p99 during the burst (target: under 20 ms).
 * 2. A receiver down, then back: 1,000 events (100 campaigns × 10) emitted while it refuses
 *    connections; it comes back after `--down-ms` (default 60,000); the time from its return
 *    until the whole backlog was delivered. Retries use the default backoff (base 5 s) unless
 *    `--retry-base-ms` says otherwise; `--quick` is `--down-ms 6000 --retry-base-ms 500`.
 *
 *   node --import tsx scripts/bench/webhooks.ts [--quick] [--down-ms N] [--retry-base-ms N]
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { openStore } from '../../src/store/index.ts'
import { createWebhooks, newSigningSecret, type WebhookEvent } from '../../src/webhooks/index.ts'

const args = process.argv.slice(2)
const flag = (name: string): number | undefined => {
  const index = args.indexOf(name)
  return index >= 0 ? Number(args[index + 1]) : undefined
}
const quick = args.includes('--quick')
const downMs = flag('--down-ms') ?? (quick ? 6_000 : 60_000)
const retryBaseMs = flag('--retry-base-ms') ?? (quick ? 500 : 5_000)
const N = 1_000

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/** A receiver answering 200, noting when each event (by its `webhook-id`) arrived. */
function receiver() {
  const arrivals = new Map<string, number>()
  const sockets = new Set<Socket>()
  let server: Server | undefined
  let port = 0
  const listen = () =>
    new Promise<void>((resolve) => {
      server = createServer((req, res) => {
        req.resume()
        req.on('end', () => {
          const id = String(req.headers['webhook-id'])
          if (!arrivals.has(id)) arrivals.set(id, performance.now())
          res.writeHead(200).end()
        })
      })
      server.on('connection', (socket) => {
        sockets.add(socket)
        socket.on('close', () => sockets.delete(socket))
      })
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as AddressInfo).port
        resolve()
      })
    })
  const close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy()
      server!.close(() => resolve())
    })
  return { arrivals, listen, close, url: () => `http://127.0.0.1:${port}/hook` }
}

function statusEvent(campaignId: string, seq: number): WebhookEvent {
  return {
    type: 'session.status',
    data: {
      campaignId,
      sessionId: `${campaignId}-s`,
      status: 'qr',
      reason: null,
      detail: null,
      at: Date.now(),
      seq,
    },
  }
}

async function withWebhooks<T>(
  url: string,
  options: { retryBaseMs?: number },
  run: (hooks: ReturnType<typeof createWebhooks>) => Promise<T>
): Promise<T> {
  const dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-bench-hooks-'))
  const store = await openStore({ dataDir, pruneIntervalMs: 0 })
  const hooks = createWebhooks({
    store,
    service: { url, secret: newSigningSecret() },
    allowPrivate: true,
    pruneIntervalMs: 0,
    ...options,
  })
  await hooks.start()
  try {
    return await run(hooks)
  } finally {
    await hooks.stop()
    await store.close()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 5))
}

async function burst(label: string, campaignOf: (i: number) => string) {
  const r = receiver()
  await r.listen()
  const figures = await withWebhooks(r.url(), {}, async (hooks) => {
    const loop = monitorEventLoopDelay({ resolution: 1 })
    loop.enable()
    const sent = new Map<string, number>()
    const started = performance.now()
    await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const at = performance.now()
        const [id] = await hooks.emit(statusEvent(campaignOf(i), i + 1))
        sent.set(id!, at)
      })
    )
    await until(() => r.arrivals.size >= N)
    const wallMs = performance.now() - started
    loop.disable()
    const latencies = [...sent].map(([id, at]) => r.arrivals.get(id)! - at)
    return {
      burst: label,
      n: N,
      wallMs: Math.round(wallMs),
      p50Ms: +percentile(latencies, 50).toFixed(1),
      p99Ms: +percentile(latencies, 99).toFixed(1),
      loopDelayP99Ms: +(loop.percentile(99) / 1e6).toFixed(1),
      loopDelayMaxMs: +(loop.max / 1e6).toFixed(1),
    }
  })
  await r.close()
  return figures
}

async function outage() {
  const r = receiver()
  await r.listen()
  await r.close()
  return withWebhooks(r.url(), { retryBaseMs }, async (hooks) => {
    await Promise.all(
      Array.from({ length: N }, (_, i) => hooks.emit(statusEvent(`c${i % 100}`, i + 1)))
    )
    await new Promise((resolve) => setTimeout(resolve, downMs))
    await r.listen()
    const back = performance.now()
    await until(() => r.arrivals.size >= N)
    const backlogMs = performance.now() - back
    const counters = hooks.counters()
    await r.close()
    return {
      outage: `${N} events, receiver down ${downMs} ms, retry base ${retryBaseMs} ms`,
      backlogDeliveredAfterMs: Math.round(backlogMs),
      attempts: counters.attempts,
      failures: counters.failures,
    }
  })
}

const results = [
  await burst('1,000 campaigns, one event each', (i) => `c${i}`),
  await burst('one campaign, 1,000 events', () => 'c0'),
  await outage(),
]
for (const result of results) console.log(JSON.stringify(result))
