/**
 * Linking with a phone number (issue 14): `POST /api/campaigns/:campaignId/pairing-code`, the
 * `pairing_code` WebSocket message, the code in `GET …/connection`, and the simulator's phone
 * typing it, over a real server (simulated engine).
 */
import { afterEach, describe, expect, it } from 'vitest'
import { api, closeAll, openSocket, startTestServer, tokenFor } from '../support/edge.ts'

afterEach(closeAll)

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
const CODE = /^[1-9A-HJ-NP-TV-Z]{8}$/

describe('POST /api/campaigns/:campaignId/pairing-code', () => {
  it('starts a session that links by code: pushed over the WebSocket, shown by connection, taken by the phone', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const socket = await openSocket(server, { token })
    socket.send({ type: 'subscribe', campaignId: 'spring-sale' })
    await socket.next((m) => m.type === 'subscribed')

    const started = await api(server, 'POST', '/api/campaigns/spring-sale/pairing-code', {
      token,
      body: { phoneNumber: '447911123456' },
    })
    expect(started.status).toBe(202)
    expect(started.json).toEqual({
      campaignId: 'spring-sale',
      sessionId: expect.any(String),
      status: 'initializing',
      isConnected: false,
      pairingCode: null,
      expiresAt: expect.stringMatching(ISO),
      reused: false,
    })

    const shown = await socket.next((m) => m.type === 'pairing_code')
    expect(shown).toEqual({
      type: 'pairing_code',
      campaignId: 'spring-sale',
      sessionId: started.json.sessionId,
      seq: expect.any(Number),
      at: expect.stringMatching(ISO),
      code: expect.stringMatching(CODE),
      expiresAt: expect.stringMatching(ISO),
    })
    expect(socket.messages.some((m) => m.type === 'qr_code')).toBe(false)

    const connection = await api(server, 'GET', '/api/campaigns/spring-sale/connection', { token })
    expect(connection.json).toMatchObject({
      status: 'awaitingScan',
      expiresAt: shown.expiresAt,
      pairingCode: { code: shown.code, expiresAt: shown.expiresAt },
    })
    const joined = await api(server, 'POST', '/api/campaigns/spring-sale/pairing-code', {
      token,
      body: { phoneNumber: '447911123456' },
    })
    expect(joined.status).toBe(200)
    expect(joined.json).toMatchObject({
      sessionId: started.json.sessionId,
      reused: true,
      pairingCode: { code: shown.code, expiresAt: shown.expiresAt },
    })

    // A late subscriber gets the code at once.
    const late = await openSocket(server, { token })
    late.send({ type: 'subscribe', campaignId: 'spring-sale' })
    expect(await late.next((m) => m.type === 'pairing_code')).toMatchObject({ code: shown.code })

    const wrong = await api(server, 'POST', '/api/simulator/campaigns/spring-sale/pairing-code', {
      token,
      body: { code: 'WRONG123' },
    })
    expect(wrong.status).toBe(409)
    expect(wrong.json.error.code).toBe('nothing_to_do')
    const typed = await api(server, 'POST', '/api/simulator/campaigns/spring-sale/pairing-code', {
      token,
      body: { code: shown.code },
    })
    expect(typed.status).toBe(200)
    await socket.next((m) => m.type === 'ready')
    const linked = await api(server, 'GET', '/api/campaigns/spring-sale/connection', { token })
    expect(linked.json.status).toBe('ready')
    expect(linked.json).not.toHaveProperty('pairingCode')
  })

  it('replaces a session that shows a QR (the dashboard’s “Link with phone number instead”)', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const socket = await openSocket(server, { token })
    socket.send({ type: 'subscribe', campaignId: 'c1' })
    const byQr = await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    await socket.next((m) => m.type === 'qr_code')
    const byCode = await api(server, 'POST', '/api/campaigns/c1/pairing-code', {
      token,
      body: { phoneNumber: '15551234567' },
    })
    expect(byCode.status).toBe(202)
    expect(byCode.json.sessionId).not.toBe(byQr.json.sessionId)
    await socket.next(
      (m) => m.type === 'status' && m.sessionId === byQr.json.sessionId && m.status === 'cleaned'
    )
    await socket.next((m) => m.type === 'pairing_code' && m.sessionId === byCode.json.sessionId)
    expect((await api(server, 'GET', '/api/campaigns/c1/qr.png', { token })).status).toBe(404)
  })

  it('refuses a phone number that is not international digits, with a clear invalid_body', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    for (const phoneNumber of ['+447911123456', '07911 123456', '0447911123456', '12345', 'abc']) {
      const refused = await api(server, 'POST', '/api/campaigns/c2/pairing-code', {
        token,
        body: { phoneNumber },
      })
      expect(refused.status).toBe(400)
      expect(refused.json.error).toEqual({
        code: 'invalid_body',
        message:
          'Invalid body: "phoneNumber": must be the phone number in international format, digits only: the country code first, without "+", spaces or a leading 0 (e.g. 447911123456).',
      })
    }
    const missing = await api(server, 'POST', '/api/campaigns/c2/pairing-code', { token, body: {} })
    expect(missing.status).toBe(400)
    expect(missing.json.error.code).toBe('invalid_body')
    // A refusal keeps nothing.
    expect(server.simulator.counters().started).toBe(0)
    const other = await api(server, 'POST', '/api/campaigns/c2/pairing-code', {
      token: await tokenFor('bob'),
      body: { phoneNumber: '447911123456' },
    })
    expect(other.status).toBe(202)
    const forbidden = await api(server, 'POST', '/api/campaigns/c2/pairing-code', {
      token,
      body: { phoneNumber: '447911123456' },
    })
    expect(forbidden.status).toBe(403)
  })
})
