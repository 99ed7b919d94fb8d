/**
 * QR images: each QR of a session is rendered at most once, only when someone asks for it (a
 * subscriber or an API answer), cached while it is the session's current QR, and rendered in a
 * pool of worker threads so that a PNG (~5-9 ms of CPU) never blocks the event loop, even when a
 * thousand sessions rotate their QR at the same instant.
 *
 * Jobs wait in a queue on the main thread and go to a worker only when it has room (two jobs
 * each). A job whose session has moved on to a newer QR by then is dropped (`SupersededQrError`):
 * when the machine is short of CPU, the backlog is of current QRs only, and cannot grow beyond
 * one per session.
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
  /** The format of `imageFor` when none is asked for (`QR_IMAGE`). */
  readonly format: QrImageFormat
  /**
   * The image data URL of a session's QR, in `format` (by default the renderer's); concurrent and
   * repeated asks for the same QR and format share one render.
   */
  imageFor(qr: QrToRender, format?: QrImageFormat): Promise<string>
  /** Drops the cached image of a session (its QR is no longer shown). */
  forget(sessionId: string): void
  /** Renders done so far, and renders asked for that the cache answered. */
  counts(): { rendered: number; cacheHits: number }
  /** Stops the workers; pending renders reject. */
  close(): Promise<void>
}

/** A newer QR of the same session was asked for before this one was rendered. */
export class SupersededQrError extends Error {
  override name = 'SupersededQrError'
}

interface Job {
  sessionId: string
  attempt: number
  text: string
  format: QrImageFormat
  queuedAt: number
  resolve(image: string): void
  reject(error: Error): void
}

interface PoolWorker {
  worker: Worker
  pending: Map<number, Job>
}

/** Jobs handed to one worker at a time; the rest wait on the main thread. */
const JOBS_PER_WORKER = 2

/** A session's current QR: its image in each format asked for so far. */
interface CacheEntry {
  attempt: number
  images: Partial<Record<QrImageFormat, Promise<string>>>
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

  const queue: Job[] = []

  function spawn(): PoolWorker {
    const entry: PoolWorker = { worker: new Worker(WORKER_URL), pending: new Map() }
    const fail = (error: Error) => {
      const index = pool.indexOf(entry)
      if (index !== -1) pool.splice(index, 1)
      for (const job of entry.pending.values()) job.reject(error)
      entry.pending.clear()
      pump()
    }
    entry.worker.on('message', (reply: { id: number; image?: string; error?: string }) => {
      const job = entry.pending.get(reply.id)
      if (!job) return
      entry.pending.delete(reply.id)
      if (entry.pending.size === 0) entry.worker.unref()
      if (reply.image !== undefined) {
        rendered++
        onRendered?.(performance.now() - job.queuedAt)
        job.resolve(reply.image)
      } else {
        job.reject(new Error(`QR render failed: ${reply.error ?? 'unknown error'}`))
      }
      pump()
    })
    entry.worker.on('error', fail)
    entry.worker.on('exit', (code) => fail(new Error(`QR render worker exited (${code})`)))
    // An idle worker must not keep a finished process (or a test run) alive; a busy one must.
    entry.worker.unref()
    pool.push(entry)
    return entry
  }

  /** A worker with room for a job, started if the pool is not full; undefined if all are busy. */
  function workerWithRoom(): PoolWorker | undefined {
    let best: PoolWorker | undefined
    for (const candidate of pool) {
      if (
        candidate.pending.size < JOBS_PER_WORKER &&
        (!best || candidate.pending.size < best.pending.size)
      ) {
        best = candidate
      }
    }
    if (best?.pending.size === 0 || pool.length >= workers) return best
    return spawn()
  }

  function isSuperseded(job: Job): boolean {
    const current = cache.get(job.sessionId)
    return current !== undefined && current.attempt > job.attempt
  }

  /** Hands queued jobs to workers with room, dropping those whose QR is no longer current. */
  function pump(): void {
    while (queue.length > 0 && !closed) {
      const job = queue[0] as Job
      if (isSuperseded(job)) {
        queue.shift()
        job.reject(new SupersededQrError(`QR ${job.attempt} of ${job.sessionId} was replaced`))
        continue
      }
      const target = workerWithRoom()
      if (!target) return
      queue.shift()
      const id = nextJobId++
      target.pending.set(id, job)
      if (target.pending.size === 1) target.worker.ref()
      target.worker.postMessage({ id, text: job.text, format: job.format })
    }
  }

  function render(
    sessionId: string,
    attempt: number,
    text: string,
    imageFormat: QrImageFormat
  ): Promise<string> {
    if (closed) return Promise.reject(new Error('The QR renderer is closed'))
    return new Promise<string>((resolve, reject) => {
      queue.push({
        sessionId,
        attempt,
        text,
        format: imageFormat,
        queuedAt: performance.now(),
        resolve,
        reject,
      })
      // Let the caller register the image in the cache first, then dispatch.
      queueMicrotask(pump)
    })
  }

  return {
    format,
    imageFor({ sessionId, attempt, qr }, imageFormat = format) {
      const cached = cache.get(sessionId)
      const cachedImage = cached?.attempt === attempt ? cached.images[imageFormat] : undefined
      if (cachedImage) {
        cacheHits++
        return cachedImage
      }
      const image = render(sessionId, attempt, qr, imageFormat)
      // An older QR asked for late is rendered but never replaces the current one.
      if (cached && cached.attempt > attempt) return image
      const entry: CacheEntry = cached?.attempt === attempt ? cached : { attempt, images: {} }
      entry.images[imageFormat] = image
      cache.delete(sessionId)
      cache.set(sessionId, entry)
      if (cache.size > cacheSize) {
        const oldest = cache.keys().next().value
        if (oldest !== undefined) cache.delete(oldest)
      }
      image.catch(() => {
        if (entry.images[imageFormat] === image) delete entry.images[imageFormat]
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
      for (const job of queue.splice(0)) job.reject(new Error('The QR renderer is closed'))
      await Promise.all(pool.map(({ worker }) => worker.terminate()))
    },
  }
}
