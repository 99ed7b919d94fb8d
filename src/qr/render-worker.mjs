/**
 * The QR rendering worker: turns raw QR texts into image data URLs off the main event loop.
 * Plain JavaScript so it runs in a worker thread without a TypeScript loader (under `tsx`, vitest
 * or plain node alike). Protocol: `{ id, text, format }` in, `{ id, image }` or `{ id, error }` out.
 *
 * PNGs are encoded here as 1-bit grayscale straight from the QR matrix (same geometry as
 * `qrcode.toDataURL`'s defaults: 4 px per module, a 4-module margin). `qrcode`'s own PNG path draws
 * a 32-bit RGBA bitmap first and costs ~4 times as much CPU for the same picture (13 ms against
 * 3 ms for a WhatsApp-sized payload on the benchmark machine; see docs/benchmarks/http.md).
 *
 * @module
 */
import { Buffer } from 'node:buffer'
import { parentPort } from 'node:worker_threads'
import { deflateSync } from 'node:zlib'
import QRCode from 'qrcode'

const SCALE = 4
const MARGIN = 4

/** @param {string} text */
export function renderPng(text) {
  const { modules } = QRCode.create(text, { errorCorrectionLevel: 'M' })
  const size = modules.size
  const width = (size + 2 * MARGIN) * SCALE
  const rowBytes = Math.ceil(width / 8)
  // One filter byte (0: none) per row, then the row's pixels, 1 bit each, 1 = white.
  const raw = Buffer.alloc((rowBytes + 1) * width)
  for (let y = 0; y < width; y++) {
    const row = y * (rowBytes + 1)
    const moduleY = Math.floor(y / SCALE) - MARGIN
    for (let x = 0; x < width; x++) {
      const moduleX = Math.floor(x / SCALE) - MARGIN
      const dark =
        moduleY >= 0 &&
        moduleY < size &&
        moduleX >= 0 &&
        moduleX < size &&
        modules.get(moduleY, moduleX) === 1
      if (!dark) raw[row + 1 + (x >> 3)] |= 0x80 >> (x & 7)
    }
  }
  const header = Buffer.alloc(13)
  header.writeUInt32BE(width, 0)
  header.writeUInt32BE(width, 4)
  header[8] = 1 // bit depth
  header[9] = 0 // grayscale
  const png = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ])
  return `data:image/png;base64,${png.toString('base64')}`
}

/** @param {string} text */
export async function renderSvg(text) {
  const svg = await QRCode.toString(text, { type: 'svg', errorCorrectionLevel: 'M' })
  return `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}`
}

/**
 * @param {string} type
 * @param {Buffer} data
 */
function chunk(type, data) {
  const length = Buffer.alloc(4)
  length.writeUInt32BE(data.length)
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data])
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(body))
  return Buffer.concat([length, body, crc])
}

const CRC_TABLE = new Uint32Array(256).map((_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})

/** @param {Buffer} bytes */
function crc32(bytes) {
  let c = 0xffffffff
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

if (parentPort) {
  const port = parentPort
  port.on(
    'message',
    async (/** @type {{ id: number, text: string, format: 'png' | 'svg' }} */ job) => {
      try {
        const image = job.format === 'svg' ? await renderSvg(job.text) : renderPng(job.text)
        port.postMessage({ id: job.id, image })
      } catch (error) {
        port.postMessage({
          id: job.id,
          error: error instanceof Error ? error.message : String(error),
        })
      }
    }
  )
}
