import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { createSimulatedEngine } from '../../src/engines/simulated.ts'
import { createSessionService, type SupervisedSessionService } from '../../src/session/service.ts'
import type { Identity } from '../../src/auth/identity.ts'
import { createInspectSocket, type InspectSocket } from '../../src/inspect/socket.ts'
import { RECENT_STEPS } from '../../src/inspect/recorder.ts'
import { summarizeContext } from '../../src/inspect/redaction.ts'

const TOKENS: Record<string, Identity> = {
  admin: { userId: 'root', admin: true, campaigns: null, validUntil: Infinity },
  alice: { userId: 'alice', admin: false, campaigns: null, validUntil: Infinity },
  // An admin of campaign zz only: the inspector would show it every other campaign.
  restricted: { userId: 'ops', admin: true, campaigns: new Set(['zz']), validUntil: Infinity },
}

interface Received {
  messages: Array<Record<string, unknown>>
  socket: WebSocket
}

describe('/ws/inspect', () => {
  let sessions: SupervisedSessionService
  let inspectSocket: InspectSocket
  let server: Server
  let url: string
  let inspectCalls: number

  beforeEach(async () => {
    const engine = createSimulatedEngine({ qrDelayMs: 20, qrRotateMs: 60_000 })
    sessions = createSessionService({
      engine,
      timeouts: { initMs: 5_000, scanMs: 5_000, authMs: 5_000, destroyMs: 500, killMs: 500 },
      maxSessions: 2_000,
    })
    inspectCalls = 0
    const counted = {
      inspect: (observer: Parameters<SupervisedSessionService['inspect']>[0]) => {
        inspectCalls += 1
        return sessions.inspect(observer)
      },
    }
    inspectSocket = createInspectSocket({
      sessions: counted,
      authenticate: async (token) => TOKENS[token] ?? null,
      existingActors: () => [sessions.supervisor],
      recordFromStart: () => [sessions.supervisor],
      toMermaid: (machine) => `stateDiagram-v2\n  [*] --> ${String(machine.config.initial)}`,
      batchMs: 20,
    })
    server = createServer((_, response) => response.writeHead(404).end())
    server.on('upgrade', (request, socket, head) => {
      inspectSocket.handleUpgrade(request, socket, head)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws/inspect`
  })

  afterEach(async () => {
    inspectSocket.close()
    await sessions.shutdown()
    await new Promise((resolve) => server.close(resolve))
  })

  function connect(query: string): Promise<Received> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(`${url}${query}`)
      const received: Received = { messages: [], socket }
      // Resolved with the viewer's hello, its first message: a hello over 64 KiB (a few dozen
      // actors) arrives after 'open', so a test reading it at 'open' read nothing.
      socket.on('message', (data) => {
        received.messages.push(JSON.parse(String(data)))
        if (received.messages.length === 1) resolve(received)
      })
      socket.once('unexpected-response', (_, response) => {
        let body = ''
        response.on('data', (chunk: Buffer) => (body += chunk.toString()))
        response.on('end', () => reject(new Error(`refused with ${response.statusCode} ${body}`)))
      })
      socket.once('error', reject)
    })
  }

  async function until(check: () => boolean, ms = 3_000): Promise<void> {
    const started = Date.now()
    while (!check()) {
      if (Date.now() - started > ms) throw new Error('condition not met in time')
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }

  function records(received: Received) {
    return received.messages
      .filter((message) => message.type === 'batch')
      .flatMap((message) => message.records as Array<Record<string, unknown>>)
  }

  it('refuses an upgrade without a token (401) and a non-admin (403)', async () => {
    await expect(connect('')).rejects.toThrow('401')
    await expect(connect('?token=garbage')).rejects.toThrow('401')
    await expect(connect('?token=alice')).rejects.toThrow('403')
    expect(inspectCalls).toBe(0)
  })

  // Issue 8, item 4: a restricted admin token received every campaign's actors and session ids.
  it('refuses an admin token restricted by a campaigns claim (403 forbidden, in the error shape)', async () => {
    await expect(connect('?token=restricted')).rejects.toThrow(
      /^refused with 403 \{"error":\{"code":"forbidden","message":"The inspector shows every campaign/
    )
    expect(inspectCalls).toBe(0)
  })

  // Issue 8, item 4: a socket kept its access after its token expired.
  it('closes a viewer with 4401 once its token has expired', async () => {
    TOKENS.expiring = { ...TOKENS.admin!, validUntil: Date.now() + 300 }
    const viewer = await connect('?token=expiring')
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      viewer.socket.once('close', (code, reason) => resolve({ code, reason: String(reason) }))
    )
    expect(await closed).toEqual({ code: 4401, reason: 'token expired' })
    await until(() => inspectSocket.viewers() === 0 && !inspectSocket.attached())
  })

  it('attaches the inspection only while a viewer is connected', async () => {
    expect(inspectSocket.attached()).toBe(false)
    const first = await connect('?token=admin')
    const second = await connect('?token=admin')
    expect(inspectSocket.attached()).toBe(true)
    expect(inspectCalls).toBe(1)
    first.socket.close()
    await until(() => inspectSocket.viewers() === 1)
    expect(inspectSocket.attached()).toBe(true)
    second.socket.close()
    await until(() => inspectSocket.viewers() === 0 && !inspectSocket.attached())
  })

  it('streams a campaign actor going initializing → awaitingScan → ready, in batches', async () => {
    const viewer = await connect('?token=admin')
    expect(viewer.messages[0]).toMatchObject({
      type: 'hello',
      batchMs: 20,
      machines: { supervisor: 'stateDiagram-v2\n  [*] --> running' },
      actors: [{ machineId: 'supervisor', label: 'supervisor', parentId: null, state: 'running' }],
    })
    sessions.requestSession({ campaignId: 'spring-sale', caller: TOKENS.alice! })
    await until(() => records(viewer).some((r) => r.k === 'step' && r.to === 'awaitingScan'))
    const campaign = records(viewer).find(
      (r) => r.k === 'actor' && (r.actor as { machineId: string }).machineId === 'campaign'
    )?.actor as { id: string; campaignId: string }
    expect(campaign.campaignId).toBe('spring-sale')
    const machine = viewer.messages.find((m) => m.type === 'machine' && m.machineId === 'campaign')
    expect(machine?.mermaid).toMatch(/^stateDiagram-v2/)
    const states = records(viewer)
      .filter((r) => r.k === 'step' && r.id === campaign.id)
      .map((r) => String(r.to).split('.')[0])
    expect(states).toContain('initializing')
    expect(states.indexOf('initializing')).toBeLessThan(states.indexOf('awaitingScan'))
    // Context summaries never carry the raw QR text.
    const qrText = sessions.getCampaign('spring-sale').qr?.qr
    expect(qrText).toBeTruthy()
    expect(JSON.stringify(viewer.messages)).not.toContain(qrText)
    viewer.socket.close()
  })

  // Issue 10: the parent comes from XState's public inspection events (`rootId`), not `_parent`.
  it('names a campaign actor’s parent: the shard it lives in, the same for its neighbours', async () => {
    const viewer = await connect('?token=admin')
    for (const campaignId of ['p1', 'p2']) {
      sessions.requestSession({ campaignId, caller: TOKENS.alice! })
    }
    const campaignActors = () =>
      records(viewer)
        .filter((r) => r.k === 'actor')
        .map((r) => r.actor as { id: string; machineId: string; parentId: string | null })
        .filter((actor) => actor.machineId === 'campaign')
    await until(() => campaignActors().length === 2)
    const [first, second] = campaignActors()
    expect(first!.parentId).toMatch(/^a\d+$/)
    expect(first!.parentId).not.toBe(first!.id)
    expect(second!.parentId).toBe(first!.parentId)
    const supervisor = (viewer.messages[0] as { actors: Array<{ parentId: string | null }> })
      .actors[0]
    expect(supervisor!.parentId).toBeNull()
  })

  it('sends each machine’s diagram once per viewer, and replays known actors to a late viewer', async () => {
    const early = await connect('?token=admin')
    for (let i = 0; i < 5; i++) {
      sessions.requestSession({ campaignId: `c${i}`, caller: TOKENS.alice! })
    }
    await until(
      () => records(early).filter((r) => r.k === 'step' && r.to === 'awaitingScan').length === 5
    )
    const diagrams = early.messages.filter(
      (m) => m.type === 'machine' && m.machineId === 'campaign'
    )
    expect(diagrams).toHaveLength(1)
    const late = await connect('?token=admin')
    const hello = late.messages[0] as { type: string; actors: Array<{ campaignId: string }> }
    expect(hello.type).toBe('hello')
    expect(
      hello.actors
        .map((a) => a.campaignId)
        .filter(Boolean)
        .sort()
    ).toEqual(['c0', 'c1', 'c2', 'c3', 'c4'])
    early.socket.close()
    late.socket.close()
  })

  it('shows the actors that were live before anyone looked, at once', async () => {
    for (const id of ['early-a', 'early-b']) {
      sessions.requestSession({ campaignId: id, caller: TOKENS.alice! })
    }
    await until(() => sessions.getCampaign('early-b').status === 'awaitingScan')
    const viewer = await connect('?token=admin')
    const hello = viewer.messages[0] as {
      type: string
      machines: Record<string, string>
      actors: Array<{ label: string; state: string }>
    }
    expect(hello.type).toBe('hello')
    expect(Object.keys(hello.machines).sort()).toEqual(['campaign', 'supervisor'])
    expect(hello.actors.map((actor) => [actor.label, actor.state]).sort()).toEqual([
      ['early-a', 'awaitingScan'],
      ['early-b', 'awaitingScan'],
      ['supervisor', 'running'],
    ])
    viewer.socket.close()
  })

  it('never shows the internal shard actors, also when a session ends (issue 9)', async () => {
    const viewer = await connect('?token=admin')
    sessions.requestSession({ campaignId: 'ends', caller: TOKENS.alice! })
    await until(() => records(viewer).some((r) => r.k === 'step' && r.to === 'awaitingScan'))
    await sessions.cleanupSession('ends')
    await until(() => records(viewer).some((r) => r.k === 'end'))
    // The next batch would carry anything recorded with the end.
    await new Promise((resolve) => setTimeout(resolve, 60))
    const actors = records(viewer)
      .filter((r) => r.k === 'actor')
      .map((r) => r.actor as { machineId: string; label: string })
    expect(actors.map((actor) => actor.machineId)).toEqual(['campaign'])
    expect(JSON.stringify(viewer.messages)).not.toContain('"machineId":"shard"')
    viewer.socket.close()
  })

  it('gives a viewer that opens the supervisor’s last steps, with the campaign of each (issue 9)', async () => {
    sessions.requestSession({ campaignId: 'before-you-looked', caller: TOKENS.alice! })
    await until(() => sessions.getCampaign('before-you-looked').status === 'awaitingScan')
    await sessions.cleanupSession('before-you-looked')
    const viewer = await connect('?token=admin')
    const hello = viewer.messages[0] as {
      actors: Array<{ machineId: string; log: Array<Record<string, unknown>> }>
    }
    const supervisor = hello.actors.find((actor) => actor.machineId === 'supervisor')!
    expect(supervisor.log.map((step) => [step.event, step.about])).toEqual([
      ['SESSION.REQUESTED', 'before-you-looked'],
      ['CLEANUP.REQUESTED', 'before-you-looked'],
      ['SESSION.ENDED', 'before-you-looked'],
    ])
    expect(supervisor.log[0]).toMatchObject({ from: 'running', to: 'running' })

    // While someone views, a campaign actor's steps are kept too, for the next viewer.
    sessions.requestSession({ campaignId: 'watched', caller: TOKENS.alice! })
    await until(() => records(viewer).some((r) => r.k === 'step' && r.to === 'awaitingScan'))
    const next = await connect('?token=admin')
    const campaign = (next.messages[0] as typeof hello).actors.find(
      (actor) => actor.machineId === 'campaign'
    )!
    expect(campaign.log.map((step) => String(step.to).split('.')[0])).toContain('awaitingScan')
    viewer.socket.close()
    next.socket.close()
  })

  it('keeps at most RECENT_STEPS steps of an actor', async () => {
    for (let i = 0; i < RECENT_STEPS + 10; i++) {
      sessions.requestSession({ campaignId: `many-${i}`, caller: TOKENS.alice! })
    }
    const viewer = await connect('?token=admin')
    const hello = viewer.messages[0] as {
      actors: Array<{ machineId: string; log: Array<Record<string, unknown>> }>
    }
    const log = hello.actors.find((actor) => actor.machineId === 'supervisor')!.log
    expect(log).toHaveLength(RECENT_STEPS)
    expect(log.at(-1)).toMatchObject({ about: `many-${RECENT_STEPS + 9}` })
    viewer.socket.close()
  })

  it('replaces the queue of a viewer that falls behind with a fresh hello', async () => {
    inspectSocket.close()
    inspectSocket = createInspectSocket({
      sessions,
      authenticate: async (token) => TOKENS[token] ?? null,
      toMermaid: () => 'stateDiagram-v2',
      batchMs: 200,
      maxQueue: 10,
    })
    const viewer = await connect('?token=admin')
    for (let i = 0; i < 20; i++)
      sessions.requestSession({ campaignId: `b${i}`, caller: TOKENS.alice! })
    await until(() => viewer.messages.filter((m) => m.type === 'hello').length === 2)
    const batch = viewer.messages.find((m) => m.type === 'batch' && Number(m.dropped) > 0)
    expect(batch).toBeDefined()
    viewer.socket.close()
  })
})

describe('summarizeContext', () => {
  it('hides QR texts and tokens, shortens values and shows times as ISO strings', () => {
    const summary = summarizeContext({
      campaignId: 'spring-sale',
      qr: { qr: '2@secret,abc', attempt: 2, expiresAt: 1_800_000_000_000 },
      token: 'eyJ...',
      phaseDeadline: 1_800_000_000_000,
      history: [{ status: 'initializing' }, { status: 'awaitingScan' }],
      long: 'x'.repeat(500),
    })
    expect(summary.campaignId).toBe('spring-sale')
    expect(String(summary.qr)).not.toContain('secret')
    expect(String(summary.qr)).toContain('2027-01-15T08:00:00.000Z')
    expect(summary.token).toBe('[hidden]')
    expect(summary.phaseDeadline).toBe('2027-01-15T08:00:00.000Z')
    expect(summary.history).toContain('[2]')
    expect(String(summary.long).length).toBeLessThanOrEqual(160)
  })
  // The supervisor keeps its restart bookkeeping in Maps, which JSON shows as {}.
  it('shows a Map by its size', () => {
    const pendingRestarts = new Map([['spring-sale', 'alice']])
    expect(summarizeContext({ pendingRestarts }).pendingRestarts).toBe('Map(1)')
  })
})
