/**
 * The inspector shows the liveness probe's events (issue 15): a ready campaign actor's steps
 * `ready.waitingForProbe → ready.probing` on the probe's delay, and back on `ENGINE.ALIVE`.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { Identity } from '../../src/auth/identity.ts'
import { createSimulatedEngine } from '../../src/engines/simulated.ts'
import { createInspectSocket, type InspectSocket } from '../../src/inspect/socket.ts'
import { createSessionService, type SupervisedSessionService } from '../../src/session/service.ts'

const ADMIN: Identity = { userId: 'root', admin: true, campaigns: null, validUntil: Infinity }

describe('/ws/inspect: the liveness probe', () => {
  let sessions: SupervisedSessionService
  let inspectSocket: InspectSocket
  let server: Server
  let url: string

  beforeEach(async () => {
    const engine = createSimulatedEngine({ qrDelayMs: 20, authDelayMs: 20 })
    engine.setBehaviour('spring-sale', { startup: 'restored' })
    sessions = createSessionService({
      engine,
      timeouts: { initMs: 5_000, scanMs: 5_000, authMs: 5_000, destroyMs: 500, killMs: 500 },
      liveness: { intervalMs: 100, timeoutMs: 50, misses: 2 },
      maxSessions: 10,
    })
    inspectSocket = createInspectSocket({
      sessions,
      authenticate: async (token) => (token === 'admin' ? ADMIN : null),
      existingActors: () => [sessions.supervisor],
      recordFromStart: () => [sessions.supervisor],
      toMermaid: () => 'stateDiagram-v2',
      batchMs: 20,
    })
    server = createServer((_, response) => response.writeHead(404).end())
    server.on('upgrade', (request, socket, head) =>
      inspectSocket.handleUpgrade(request, socket, head)
    )
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws/inspect?token=admin`
  })

  afterEach(async () => {
    inspectSocket.close()
    await sessions.shutdown()
    await new Promise((resolve) => server.close(resolve))
  })

  it('streams the probe steps of a ready campaign actor, and its lastSeenAliveAt', async () => {
    const socket = new WebSocket(url)
    const records: Array<Record<string, unknown>> = []
    socket.on('message', (data) => {
      const message = JSON.parse(String(data)) as { type: string; records?: typeof records }
      if (message.type === 'batch') records.push(...(message.records ?? []))
    })
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject))
    sessions.requestSession({ campaignId: 'spring-sale', caller: { userId: 'a', admin: false } })
    const deadline = Date.now() + 5_000
    const alive = () =>
      records.some(
        (r) => r.k === 'step' && r.event === 'ENGINE.ALIVE' && r.from === 'ready.probing'
      )
    while (!alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    const steps = records.filter((r) => r.k === 'step')
    expect(steps).toContainEqual(
      expect.objectContaining({
        event: expect.stringMatching(/^xstate\.after\.nextProbe\./),
        from: 'ready.waitingForProbe',
        to: 'ready.probing',
      })
    )
    expect(steps).toContainEqual(
      expect.objectContaining({
        event: 'ENGINE.ALIVE',
        from: 'ready.probing',
        to: 'ready.waitingForProbe',
      })
    )
    await new Promise((resolve) => setTimeout(resolve, 100))
    const context = records.filter((r) => r.k === 'context').at(-1)?.context as
      Record<string, unknown> | undefined
    expect(context?.lastSeenAliveAt).toMatch(/^\d{4}-\d{2}-\d{2}T/)
    socket.close()
  })
})
