/**
 * QR images: each QR of a session is rendered at most once, only when someone asks for it (a
 * subscriber or an API answer), cached while it is the session's current QR, and rendered in a
 * pool of worker threads so that a PNG (~5-9 ms of CPU) never blocks the event loop, even when a
 * thousand sessions rotate their QR at the same instant.
 *
 * @module
 */
import { availableParallelism } from 'node:os'
import { performance } from 'node:perf_hooks'
import { Worker } from 'node:worker_threads'

export type QrImageFormat = 'png' | 'svg'

export interface QrImageRendererOptions {
  /** `png` gives `data:image/png;base64,…`, `svg` gives `data:image/svg+xml;base64,…`. */
  format?: QrImageFormat
  /** Worker threads; by default one per core but one, at least one. */
  workers?: number
  /** Sessions whose current QR image is kept. */
  cacheSize?: number
  /** Called after each render with its wall time in the worker's queue and worker, in ms. */
  onRendered?: (durationMs: number) => void
}

export interface QrToRender {
  sessionId: string
  attempt: number
  /** The raw QR text. */
  qr: string
}

export interface QrImageRenderer {
  readonly format: QrImageFormat
  /** The image data URL of a session's QR; concurrent and repeated asks share one render. */
  imageFor(qr: QrToRender): Promise<string>
  /** Drops the cached image of a session (its QR is no longer shown). */
  forget(sessionId: string): void
  /** Renders done so far, and renders asked for that the cache answered. */
  counts(): { rendered: number; cacheHits: number }
  /** Stops the workers; pending renders reject. */
  close(): Promise<void>
}

interface PoolWorker {
  worker: Worker
  pending: Map<number, { resolve(image: string): void; reject(error: Error): void }>
}

interface CacheEntry {
  attempt: number
  image: Promise<string>
}

const WORKER_URL = new URL('./render-worker.mjs', import.meta.url)

/**
 * Creates the renderer and its (lazily started) worker pool.
 *
 * @example
 * const images = createQrImageRenderer({ format: 'png' })
 * const dataUrl = await images.imageFor({ sessionId, attempt: 1, qr: '2@…' })
 */
export function createQrImageRenderer({
  format = 'png',
  workers = Math.max(1, availableParallelism() - 1),
  cacheSize = 4096,
  onRendered,
}: QrImageRendererOptions = {}): QrImageRenderer {
  const pool: PoolWorker[] = []
  const cache = new Map<string, CacheEntry>()
  let nextJobId = 1
  let rendered = 0
  let cacheHits = 0
  let closed = false

  function spawn(): PoolWorker {
    const entry: PoolWorker = { worker: new Worker(WORKER_URL), pending: new Map() }
    const fail = (error: Error) => {
      const index = pool.indexOf(entry)
      if (index !== -1) pool.splice(index, 1)
      for (const job of entry.pending.values()) job.reject(error)
      entry.pending.clear()
    }
    entry.worker.on('message', (reply: { id: number; image?: string; error?: string }) => {
      const job = entry.pending.get(reply.id)
      if (!job) return
      entry.pending.delete(reply.id)
      if (entry.pending.size === 0) entry.worker.unref()
      if (reply.image !== undefined) job.resolve(reply.image)
      else job.reject(new Error(`QR render failed: ${reply.error ?? 'unknown error'}`))
    })
    entry.worker.on('error', fail)
    entry.worker.on('exit', (code) => fail(new Error(`QR render worker exited (${code})`)))
    // An idle worker must not keep a finished process (or a test run) alive; a busy one must.
    entry.worker.unref()
    pool.push(entry)
    return entry
  }

  function leastBusyWorker(): PoolWorker {
    if (pool.length < workers) {
      const idle = pool.find((candidate) => candidate.pending.size === 0)
      return idle ?? spawn()
    }
    let best = pool[0] as PoolWorker
    for (const candidate of pool) if (candidate.pending.size < best.pending.size) best = candidate
    return best
  }

  function render(text: string): Promise<string> {
    if (closed) return Promise.reject(new Error('The QR renderer is closed'))
    const target = leastBusyWorker()
    const id = nextJobId++
    const started = performance.now()
    return new Promise<string>((resolve, reject) => {
      target.pending.set(id, {
        resolve: (image) => {
          rendered++
          onRendered?.(performance.now() - started)
          resolve(image)
        },
        reject,
      })
      if (target.pending.size === 1) target.worker.ref()
      target.worker.postMessage({ id, text, format })
    })
  }

  return {
    format,
    imageFor({ sessionId, attempt, qr }) {
      const cached = cache.get(sessionId)
      if (cached && cached.attempt === attempt) {
        cacheHits++
        return cached.image
      }
      const image = render(qr)
      // An older QR asked for late is rendered but never replaces the current one.
      if (cached && cached.attempt > attempt) return image
      cache.delete(sessionId)
      cache.set(sessionId, { attempt, image })
      if (cache.size > cacheSize) {
        const oldest = cache.keys().next().value
        if (oldest !== undefined) cache.delete(oldest)
      }
      image.catch(() => {
        if (cache.get(sessionId)?.image === image) cache.delete(sessionId)
      })
      return image
    },
    forget(sessionId) {
      cache.delete(sessionId)
    },
    counts: () => ({ rendered, cacheHits }),
    async close() {
      closed = true
      cache.clear()
      await Promise.all(pool.map(({ worker }) => worker.terminate()))
    },
  }
}
