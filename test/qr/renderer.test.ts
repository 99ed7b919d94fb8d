/**
 * QR images: the worker's PNG encodes exactly the QR matrix, images are rendered once per QR and
 * only when asked, and the cache holds only a session's current QR.
 */
import { inflateSync } from 'node:zlib'
import QRCode from 'qrcode'
import { afterEach, describe, expect, it } from 'vitest'
import { fakeWhatsAppQr } from '../../src/engines/simulated.ts'
import { renderPng } from '../../src/qr/render-worker.mjs'
import {
  createQrImageRenderer,
  SupersededQrError,
  type QrImageRenderer,
} from '../../src/qr/renderer.ts'

/** Decodes the 1-bit grayscale PNG the worker writes into rows of booleans (true = dark). */
function decodePng(dataUrl: string): { width: number; dark: boolean[][] } {
  const png = Buffer.from(dataUrl.replace('data:image/png;base64,', ''), 'base64')
  expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
  let offset = 8
  let width = 0
  const idat: Buffer[] = []
  while (offset < png.length) {
    const length = png.readUInt32BE(offset)
    const type = png.toString('ascii', offset + 4, offset + 8)
    const data = png.subarray(offset + 8, offset + 8 + length)
    if (type === 'IHDR') {
      width = data.readUInt32BE(0)
      expect(data.readUInt32BE(4)).toBe(width)
      expect([data[8], data[9]]).toEqual([1, 0])
    }
    if (type === 'IDAT') idat.push(data)
    offset += 12 + length
  }
  const raw = inflateSync(Buffer.concat(idat))
  const rowBytes = Math.ceil(width / 8)
  const dark: boolean[][] = []
  for (let y = 0; y < width; y++) {
    const row: boolean[] = []
    for (let x = 0; x < width; x++) {
      row.push(((raw[y * (rowBytes + 1) + 1 + (x >> 3)]! >> (7 - (x & 7))) & 1) === 0)
    }
    dark.push(row)
  }
  return { width, dark }
}

describe('renderPng', () => {
  it('draws the QR matrix at 4 px per module with a 4-module quiet zone', () => {
    const text = fakeWhatsAppQr()
    const { modules } = QRCode.create(text, { errorCorrectionLevel: 'M' })
    const { width, dark } = decodePng(renderPng(text))
    expect(width).toBe((modules.size + 8) * 4)
    for (let y = 0; y < width; y++) {
      for (let x = 0; x < width; x++) {
        const my = Math.floor(y / 4) - 4
        const mx = Math.floor(x / 4) - 4
        const inside = my >= 0 && my < modules.size && mx >= 0 && mx < modules.size
        const expected = inside && modules.get(my, mx) === 1
        if (dark[y]![x] !== expected) throw new Error(`pixel ${x},${y} differs`)
      }
    }
  })
})

describe('createQrImageRenderer', () => {
  let renderer: QrImageRenderer
  afterEach(() => renderer.close())

  it('renders each QR once, however many ask, concurrently or later', async () => {
    renderer = createQrImageRenderer()
    const qr = { sessionId: 's1', attempt: 1, qr: fakeWhatsAppQr() }
    const images = await Promise.all(Array.from({ length: 50 }, () => renderer.imageFor(qr)))
    expect(new Set(images).size).toBe(1)
    expect(images[0]).toMatch(/^data:image\/png;base64,/)
    expect(await renderer.imageFor(qr)).toBe(images[0])
    expect(renderer.counts()).toEqual({ rendered: 1, cacheHits: 50 })
  })

  it("keeps only the session's current QR, and forgets it on request", async () => {
    renderer = createQrImageRenderer()
    const first = { sessionId: 's1', attempt: 1, qr: fakeWhatsAppQr() }
    const second = { sessionId: 's1', attempt: 2, qr: fakeWhatsAppQr() }
    const one = await renderer.imageFor(first)
    const two = await renderer.imageFor(second)
    expect(two).not.toBe(one)
    await renderer.imageFor(second)
    // A late ask for an older QR is not rendered: the session shows a newer one.
    await expect(renderer.imageFor(first)).rejects.toBeInstanceOf(SupersededQrError)
    await renderer.imageFor(second)
    expect(renderer.counts()).toEqual({ rendered: 2, cacheHits: 2 })
    renderer.forget('s1')
    await renderer.imageFor(second)
    expect(renderer.counts().rendered).toBe(3)
  })

  it('drops queued QRs that a newer QR of their session replaced, so a backlog stays one per session', async () => {
    renderer = createQrImageRenderer({ workers: 1 })
    const asked: Array<Promise<string>> = []
    for (let attempt = 1; attempt <= 20; attempt++) {
      for (const sessionId of ['a', 'b', 'c']) {
        asked.push(renderer.imageFor({ sessionId, attempt, qr: fakeWhatsAppQr() }))
      }
    }
    const outcomes = await Promise.allSettled(asked)
    const superseded = outcomes.filter(
      (o) => o.status === 'rejected' && o.reason instanceof SupersededQrError
    )
    // One worker takes two jobs at once; every other QR but the last of each session is dropped.
    expect(renderer.counts().rendered).toBeLessThanOrEqual(5)
    expect(superseded.length).toBe(60 - renderer.counts().rendered)
    for (const last of outcomes.slice(-3)) expect(last.status).toBe('fulfilled')
  })

  it('renders SVG when asked', async () => {
    renderer = createQrImageRenderer({ format: 'svg' })
    const image = await renderer.imageFor({ sessionId: 's', attempt: 1, qr: 'hello' })
    expect(Buffer.from(image.split(',')[1]!, 'base64').toString()).toContain('<svg')
  })

  it('renders a QR once per format asked for, in the default format unless told (issue 14)', async () => {
    renderer = createQrImageRenderer({ format: 'png' })
    const qr = { sessionId: 's1', attempt: 1, qr: fakeWhatsAppQr() }
    const [png, svg, svgAgain, pngAgain] = await Promise.all([
      renderer.imageFor(qr),
      renderer.imageFor(qr, 'svg'),
      renderer.imageFor(qr, 'svg'),
      renderer.imageFor(qr, 'png'),
    ])
    expect(png).toMatch(/^data:image\/png;base64,/)
    expect(svg).toMatch(/^data:image\/svg\+xml;base64,/)
    expect([svgAgain, pngAgain]).toEqual([svg, png])
    expect(renderer.counts()).toEqual({ rendered: 2, cacheHits: 2 })
    // A new QR of the session replaces both images.
    await renderer.imageFor({ ...qr, attempt: 2 }, 'svg')
    await expect(renderer.imageFor(qr)).rejects.toBeInstanceOf(SupersededQrError)
  })

  it('bounds the cache', async () => {
    renderer = createQrImageRenderer({ cacheSize: 2 })
    for (const id of ['a', 'b', 'c']) await renderer.imageFor({ sessionId: id, attempt: 1, qr: id })
    await renderer.imageFor({ sessionId: 'a', attempt: 1, qr: 'a' })
    expect(renderer.counts()).toEqual({ rendered: 4, cacheHits: 0 })
  })
})
