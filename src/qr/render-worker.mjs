/**
 * The QR rendering worker: turns raw QR texts into image data URLs off the main event loop.
 * Plain JavaScript so it runs in a worker thread without a TypeScript loader (under `tsx`, vitest
 * or plain node alike). Protocol: `{ id, text, format }` in, `{ id, image }` or `{ id, error }` out.
 *
 * @module
 */
import { Buffer } from 'node:buffer'
import { parentPort } from 'node:worker_threads'
import QRCode from 'qrcode'

if (!parentPort) throw new Error('render-worker.mjs must run in a worker thread')
const port = parentPort

port.on(
  'message',
  async (/** @type {{ id: number, text: string, format: 'png' | 'svg' }} */ job) => {
    try {
      const image =
        job.format === 'svg'
          ? `data:image/svg+xml;base64,${Buffer.from(await QRCode.toString(job.text, { type: 'svg' })).toString('base64')}`
          : await QRCode.toDataURL(job.text)
      port.postMessage({ id: job.id, image })
    } catch (error) {
      port.postMessage({
        id: job.id,
        error: error instanceof Error ? error.message : String(error),
      })
    }
  }
)
