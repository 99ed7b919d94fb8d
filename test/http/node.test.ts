/**
 * Issue 12: `node`, the node that runs a campaign's session, in the edge's answers, and a session
 * that runs on another node answered by this one as its own (connection, list, WebSocket with the
 * QR rendered here). The other node is played by `applyRemote`, as the cluster relays its events.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { RemoteSessionEvent, SessionStatus } from '../../src/session/api.ts'
import { api, closeAll, openSocket, startTestServer, tokenFor } from '../support/edge.ts'

afterEach(closeAll)

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

function remoteStatus(
  sessionId: string,
  status: SessionStatus,
  reason: 'cleanup_requested' | null = null
): RemoteSessionEvent {
  const active = !['cleaning', 'cleaned'].includes(status)
  return {
    node: 'node-a',
    owner: 'alice',
    event: {
      type: 'status',
      campaignId: 'elsewhere',
      sessionId,
      at: Date.now(),
      status,
      reason,
      isConnected: status === 'ready',
      hasActiveSession: active,
      node: 'node-a',
    },
    expiresAt: active ? Date.now() + 30_000 : null,
    lastSeenAlive: null,
  }
}

function remoteQr(sessionId: string, text: string, attempt: number): RemoteSessionEvent {
  const at = Date.now()
  return {
    node: 'node-a',
    owner: 'alice',
    event: {
      type: 'qr',
      campaignId: 'elsewhere',
      sessionId,
      at,
      qr: text,
      attempt,
      expiresAt: at + 30_000,
    },
    expiresAt: at + 30_000,
    lastSeenAlive: null,
  }
}

describe('node: which node runs the session', () => {
  it('is null outside a cluster, in the connection, the list and the socket', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    await api(server, 'POST', '/api/campaigns/here/qr-code', { token })
    const connection = await api(server, 'GET', '/api/campaigns/here/connection', { token })
    expect(connection.json).toMatchObject({ hasActiveSession: true, node: null })
    const list = await api(server, 'GET', '/api/campaigns', { token })
    expect(list.json.campaigns).toEqual([expect.objectContaining({ node: null })])
    const socket = await openSocket(server, { token })
    socket.send({ type: 'subscribe', campaignId: 'here' })
    expect(await socket.next((m) => m.type === 'subscribed')).toMatchObject({ node: null })
  })

  it('answers for a session that runs on another node: connection, list, owner, tombstone', async () => {
    const server = await startTestServer()
    const alice = await tokenFor('alice')
    server.sessions.applyRemote(remoteStatus('remote-1', 'initializing'))
    server.sessions.applyRemote(remoteQr('remote-1', 'qr-text-1', 1))
    server.sessions.applyRemote(remoteStatus('remote-1', 'awaitingScan'))

    const connection = await api(server, 'GET', '/api/campaigns/elsewhere/connection', {
      token: alice,
    })
    expect(connection.json).toMatchObject({
      campaignId: 'elsewhere',
      sessionId: 'remote-1',
      status: 'awaitingScan',
      hasActiveSession: true,
      expiresAt: expect.stringMatching(ISO),
      node: 'node-a',
    })
    expect(connection.json.history.map((entry: { status: string }) => entry.status)).toEqual([
      'initializing',
      'awaitingScan',
    ])
    const list = await api(server, 'GET', '/api/campaigns', { token: alice })
    expect(list.json.campaigns).toEqual([
      expect.objectContaining({ campaignId: 'elsewhere', node: 'node-a' }),
    ])
    // Its QR as an image, rendered by this node.
    const png = await api(server, 'GET', '/api/campaigns/elsewhere/qr.png', { token: alice })
    expect(png.status).toBe(200)
    // The owner the other node told is the owner here.
    const bob = await tokenFor('bob')
    const refused = await api(server, 'GET', '/api/campaigns/elsewhere/connection', { token: bob })
    expect(refused.status).toBe(403)

    server.sessions.applyRemote(remoteStatus('remote-1', 'cleaning', 'cleanup_requested'))
    server.sessions.applyRemote(remoteStatus('remote-1', 'cleaned', 'cleanup_requested'))
    const ended = await api(server, 'GET', '/api/campaigns/elsewhere/connection', { token: alice })
    expect(ended.json).toMatchObject({
      sessionId: 'remote-1',
      status: 'cleaned',
      reason: 'cleanup_requested',
      hasActiveSession: false,
      expiresAt: null,
      node: 'node-a',
    })
  })

  it("sends a remote session's events to this node's sockets, its QR rendered here, with node", async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    server.sessions.applyRemote(remoteStatus('remote-1', 'initializing'))

    const byCampaign = await openSocket(server, { token })
    byCampaign.send({ type: 'subscribe', campaignId: 'elsewhere' })
    const subscribed = await byCampaign.next((m) => m.type === 'subscribed')
    expect(subscribed).toMatchObject({
      sessionId: 'remote-1',
      status: 'initializing',
      hasActiveSession: true,
      node: 'node-a',
    })
    // The seed's way: by sessionId, without a token.
    const bySession = await openSocket(server)
    bySession.send({ type: 'subscribe', sessionId: 'remote-1' })
    await bySession.next((m) => m.type === 'subscribed')

    server.sessions.applyRemote(remoteQr('remote-1', 'qr-text-1', 1))
    server.sessions.applyRemote(remoteStatus('remote-1', 'awaitingScan'))
    for (const socket of [byCampaign, bySession]) {
      const qr = await socket.next((m) => m.type === 'qr_code')
      expect(qr).toMatchObject({
        sessionId: 'remote-1',
        qr: 'qr-text-1',
        attempt: 1,
        qrCode: expect.stringMatching(/^data:image\/png;base64,/),
      })
      const status = await socket.next((m) => m.type === 'status')
      expect(status).toMatchObject({ status: 'awaitingScan', node: 'node-a' })
      expect(status.seq).toBeGreaterThan(qr.seq)
    }
    // A late subscriber gets the QR shown at once.
    const late = await openSocket(server, { token })
    late.send({ type: 'subscribe', campaignId: 'elsewhere' })
    expect(await late.next((m) => m.type === 'qr_code')).toMatchObject({ qr: 'qr-text-1' })
  })
})
