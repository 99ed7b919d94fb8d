/**
 * The QR as an image URL (issue 14): `GET /api/campaigns/:campaignId/qr.png` and `qr.svg`, over a
 * real server (simulated engine), for clients that cannot hold a WebSocket.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { renderPng, renderSvg } from '../../src/qr/render-worker.mjs'
import { createQrImageRenderer } from '../../src/qr/renderer.ts'
import { api, closeAll, openSocket, startTestServer, tokenFor } from '../support/edge.ts'

afterEach(closeAll)

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

/** The bytes of an image data URL. */
const bytesOf = (dataUrl: string) => Buffer.from(dataUrl.split(',')[1]!, 'base64')

describe('GET /api/campaigns/:campaignId/qr.png and qr.svg', () => {
  it('answers the QR the session shows now, uncached, rendered once per QR and format', async () => {
    const qrImages = createQrImageRenderer()
    const server = await startTestServer({}, { qrImages })
    const token = await tokenFor('alice')
    const socket = await openSocket(server, { token })
    socket.send({ type: 'subscribe', campaignId: 'spring-sale' })
    await socket.next((m) => m.type === 'subscribed')
    await api(server, 'POST', '/api/campaigns/spring-sale/qr-code', { token })
    const shown = await socket.next((m) => m.type === 'qr_code')

    const png = await api(server, 'GET', '/api/campaigns/spring-sale/qr.png', { token })
    expect(png.status).toBe(200)
    expect(png.headers.get('content-type')).toBe('image/png')
    expect(png.headers.get('cache-control')).toBe('no-store')
    expect(png.bytes.subarray(0, 8)).toEqual(PNG_SIGNATURE)
    // The very QR the WebSocket showed, as the worker draws it.
    expect(png.bytes).toEqual(bytesOf(renderPng(shown.qr)))

    const svg = await api(server, 'GET', '/api/campaigns/spring-sale/qr.svg', { token })
    expect(svg.status).toBe(200)
    expect(svg.headers.get('content-type')).toBe('image/svg+xml')
    expect(svg.headers.get('cache-control')).toBe('no-store')
    expect(svg.bytes).toEqual(bytesOf(await renderSvg(shown.qr)))

    const before = qrImages.counts().rendered
    await api(server, 'GET', '/api/campaigns/spring-sale/qr.png', { token })
    await api(server, 'GET', '/api/campaigns/spring-sale/qr.svg', { token })
    expect(qrImages.counts().rendered).toBe(before)
  })

  it('answers 404 no_qr when no QR is shown: never started, then linked', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    for (const extension of ['png', 'svg']) {
      const none = await api(server, 'GET', `/api/campaigns/c1/qr.${extension}`, { token })
      expect(none.status).toBe(404)
      expect(none.json.error.code).toBe('no_qr')
    }
    const socket = await openSocket(server, { token })
    socket.send({ type: 'subscribe', campaignId: 'c1' })
    await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    await socket.next((m) => m.type === 'qr_code')
    expect((await api(server, 'GET', '/api/campaigns/c1/qr.png', { token })).status).toBe(200)
    expect(server.simulator.scan('c1')).toBe(true)
    await socket.next((m) => m.type === 'ready')
    const linked = await api(server, 'GET', '/api/campaigns/c1/qr.png', { token })
    expect(linked.status).toBe(404)
    expect(linked.json).toEqual({
      error: { code: 'no_qr', message: 'Campaign c1 shows no QR code now.' },
    })
  })

  it('is authorized like the other campaign routes', async () => {
    const server = await startTestServer()
    const alice = await tokenFor('alice')
    await api(server, 'POST', '/api/campaigns/c2/qr-code', { token: alice })
    const anonymous = await api(server, 'GET', '/api/campaigns/c2/qr.png')
    expect(anonymous.status).toBe(401)
    const bob = await api(server, 'GET', '/api/campaigns/c2/qr.svg', {
      token: await tokenFor('bob'),
    })
    expect(bob.status).toBe(403)
    expect(bob.json.error.code).toBe('forbidden')
  })
})
