/**
 * The campaign API of the contract, over a real server (simulated engine, short deadlines).
 * The seed's test cases 1 (same campaign requested repeatedly), 2 (timeout without a scan) and
 * 3 (cleanup endpoint) are here; 4 (real-time QR over the socket) is in test/ws.
 */
import { afterEach, describe, expect, it } from 'vitest'
import {
  api,
  closeAll,
  eventually,
  openSocket,
  startTestServer,
  tokenFor,
  type TestServer,
} from '../support/edge.ts'
import { createScriptedEngine } from '../support/scriptedEngine.ts'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

afterEach(closeAll)

/** Waits until the campaign's last session has ended and its engine is gone. */
async function waitForEnd(server: TestServer, token: string, campaignId: string) {
  await eventually(async () => {
    const { json } = await api(server, 'GET', `/api/campaigns/${campaignId}/connection`, { token })
    return json.history.at(-1)?.status === 'cleaned'
  })
}

async function waitForStatus(
  server: TestServer,
  token: string,
  campaignId: string,
  status: string
) {
  let last = ''
  await eventually(async () => {
    const { json } = await api(server, 'GET', `/api/campaigns/${campaignId}/connection`, { token })
    last = json.status
    return last === status
  }).catch(() => {
    throw new Error(`campaign ${campaignId} never reached ${status} (last: ${last})`)
  })
}

describe('POST /api/campaigns/:campaignId/qr-code', () => {
  it('starts a session with 202 and answers at once, without waiting for the QR', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const { status, json } = await api(server, 'POST', '/api/campaigns/spring-sale/qr-code', {
      token,
    })
    expect(status).toBe(202)
    expect(json).toEqual({
      campaignId: 'spring-sale',
      sessionId: expect.stringMatching(UUID),
      status: 'initializing',
      isConnected: false,
      qrCode: null,
      expiresAt: expect.stringMatching(ISO),
      reused: false,
    })
  })

  it('returns the same session to a second request while the QR is pending (seed case 1)', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const first = await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    await waitForStatus(server, token, 'c1', 'awaitingScan')

    for (let i = 0; i < 3; i++) {
      const again = await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
      expect(again.status).toBe(200)
      expect(again.json.sessionId).toBe(first.json.sessionId)
      expect(again.json.reused).toBe(true)
      expect(again.json.status).toBe('awaitingScan')
      expect(again.json.qrCode).toMatch(/^data:image\/png;base64,/)
    }
    expect(server.simulator.counters().started).toBe(1)
  })

  it('renders the QR as SVG when QR_IMAGE=svg', async () => {
    const server = await startTestServer({ QR_IMAGE: 'svg' })
    const token = await tokenFor('alice')
    await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    await waitForStatus(server, token, 'c1', 'awaitingScan')
    const { json } = await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    expect(json.qrCode).toMatch(/^data:image\/svg\+xml;base64,/)
    expect(Buffer.from(json.qrCode.split(',')[1], 'base64').toString()).toContain('<svg')
  })

  it('starts one engine and hands out one sessionId to 200 concurrent requests', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const answers = await Promise.all(
      Array.from({ length: 200 }, () =>
        api(server, 'POST', '/api/campaigns/rush/qr-code', { token })
      )
    )
    const sessionIds = new Set(answers.map((answer) => answer.json.sessionId))
    expect(sessionIds.size).toBe(1)
    expect(answers.filter((answer) => answer.status === 202)).toHaveLength(1)
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(199)
    expect(server.simulator.counters().started).toBe(1)
  })

  it('answers 200 with status ready and starts nothing when the session is ready', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const first = await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    await waitForStatus(server, token, 'c1', 'awaitingScan')
    expect((await api(server, 'POST', '/api/simulator/campaigns/c1/scan', { token })).status).toBe(
      200
    )
    await waitForStatus(server, token, 'c1', 'ready')

    const again = await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    expect(again.status).toBe(200)
    expect(again.json).toMatchObject({
      sessionId: first.json.sessionId,
      status: 'ready',
      isConnected: true,
      qrCode: null,
    })
    expect(server.simulator.counters().started).toBe(1)
  })

  it('cleans the session up and starts a new one with force, from the body or the query', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const first = await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    const forced = await api(server, 'POST', '/api/campaigns/c1/qr-code', {
      token,
      body: { force: true },
    })
    expect(forced.status).toBe(202)
    expect(forced.json.sessionId).not.toBe(first.json.sessionId)
    const byQuery = await api(server, 'POST', '/api/campaigns/c1/qr-code?force=true', { token })
    expect(byQuery.status).toBe(202)
    expect(byQuery.json.sessionId).not.toBe(forced.json.sessionId)
    await eventually(() => server.simulator.liveCount() === 1)
  })

  it('accepts the seed frontend request: Content-Type application/json and no body', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const { status } = await api(server, 'POST', '/api/campaigns/c1/qr-code', {
      token,
      headers: { 'Content-Type': 'application/json' },
    })
    expect(status).toBe(202)
  })

  it('answers 503 at_capacity with Retry-After past MAX_SESSIONS', async () => {
    const server = await startTestServer({ MAX_SESSIONS: '1' })
    const token = await tokenFor('alice')
    expect((await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })).status).toBe(202)
    const refused = await api(server, 'POST', '/api/campaigns/c2/qr-code', { token })
    expect(refused.status).toBe(503)
    expect(refused.json.error.code).toBe('at_capacity')
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0)
  })
})

describe('GET /api/campaigns/:campaignId/connection', () => {
  it('answers 200 idle for a campaign never seen', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const { status, json } = await api(server, 'GET', '/api/campaigns/never-seen/connection', {
      token,
    })
    expect(status).toBe(200)
    expect(json).toEqual({
      campaignId: 'never-seen',
      isConnected: false,
      lastActivity: null,
      hasActiveSession: false,
      sessionId: null,
      status: 'idle',
      reason: null,
      detail: null,
      expiresAt: null,
      lastSeenAlive: null,
      node: null,
      history: [],
    })
  })

  it('tells the live session, its deadline and its history with ISO times', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const started = await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    await waitForStatus(server, token, 'c1', 'awaitingScan')
    const { json } = await api(server, 'GET', '/api/campaigns/c1/connection', { token })
    expect(json).toMatchObject({
      campaignId: 'c1',
      isConnected: false,
      hasActiveSession: true,
      sessionId: started.json.sessionId,
      status: 'awaitingScan',
      reason: null,
      detail: null,
      lastActivity: expect.stringMatching(ISO),
      expiresAt: expect.stringMatching(ISO),
    })
    expect(json.history.map((entry: { status: string }) => entry.status)).toEqual([
      'initializing',
      'awaitingScan',
    ])
    expect(json.history[0].at).toMatch(ISO)
  })

  it('keeps telling what happened after a scan timeout (seed case 2)', async () => {
    const server = await startTestServer({ SCAN_TIMEOUT_MS: '300' })
    const token = await tokenFor('alice')
    const started = await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    await waitForEnd(server, token, 'c1')
    const { json } = await api(server, 'GET', '/api/campaigns/c1/connection', { token })
    expect(json).toMatchObject({
      sessionId: started.json.sessionId,
      status: 'timedOut',
      hasActiveSession: false,
      isConnected: false,
      reason: 'scan_timeout',
      detail: null,
    })
    expect(json.history.map((entry: { status: string }) => entry.status)).toContain('timedOut')
    expect(server.simulator.liveCount()).toBe(0)

    const next = await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    expect(next.status).toBe(202)
    expect(next.json.sessionId).not.toBe(started.json.sessionId)
  })
})

describe('GET /api/campaigns/:campaignId/connection: why a session failed (issue 9)', () => {
  const PROXY_DOWN =
    'initialize() failed: net::ERR_PROXY_CONNECTION_FAILED via http://bob:hunter2@10.0.0.1:3128 at https://web.whatsapp.com/'

  it('answers the engine’s detail at the top level, with a hint a person can act on', async () => {
    const scripted = createScriptedEngine()
    const server = await startTestServer({}, { engine: scripted.engine })
    const token = await tokenFor('alice')
    await api(server, 'POST', '/api/campaigns/offline/qr-code', { token })
    scripted.last().emit({
      type: 'terminated',
      kind: 'start_failed',
      detail: 'initialize() failed: net::ERR_NAME_NOT_RESOLVED at https://web.whatsapp.com/',
    })
    await waitForEnd(server, token, 'offline')
    const { json } = await api(server, 'GET', '/api/campaigns/offline/connection', { token })
    expect(json).toMatchObject({
      status: 'failed',
      reason: 'engine_failed',
      hasActiveSession: false,
      detail:
        'This machine cannot reach web.whatsapp.com (DNS) — initialize() failed: net::ERR_NAME_NOT_RESOLVED at https://web.whatsapp.com/',
    })
    expect(json.history.find((entry: { status: string }) => entry.status === 'failed').detail).toBe(
      json.detail
    )
  })

  it('never shows a password or a token the engine put in its detail', async () => {
    const scripted = createScriptedEngine()
    const server = await startTestServer({}, { engine: scripted.engine })
    const token = await tokenFor('alice')
    await api(server, 'POST', '/api/campaigns/behind-proxy/qr-code', { token })
    scripted.last().emit({
      type: 'terminated',
      kind: 'start_failed',
      detail: `${PROXY_DOWN} (Authorization: Bearer ${token})`,
    })
    await waitForEnd(server, token, 'behind-proxy')
    const response = await api(server, 'GET', '/api/campaigns/behind-proxy/connection', { token })
    const body = JSON.stringify(response.json)
    expect(body).not.toContain('hunter2')
    expect(body).not.toContain(token)
    expect(response.json.detail).toMatch(
      /^The proxy cannot be reached \(check the proxy settings\)/
    )
    expect(response.json.detail).toContain('http://[redacted]@10.0.0.1:3128')
    const listed = await api(server, 'GET', '/api/campaigns', { token })
    expect(JSON.stringify(listed.json)).not.toContain('hunter2')
  })
})

describe('POST /api/campaigns/:campaignId/cleanup-session', () => {
  it('tears the session down, answers when the engine is gone, and is idempotent (seed case 3)', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const started = await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    await waitForStatus(server, token, 'c1', 'awaitingScan')

    const cleaned = await api(server, 'POST', '/api/campaigns/c1/cleanup-session', { token })
    expect(cleaned.status).toBe(200)
    expect(cleaned.json).toEqual({
      message: 'Session cleaned up successfully',
      campaignId: 'c1',
      sessionId: started.json.sessionId,
      hadSession: true,
    })
    expect(server.simulator.liveCount()).toBe(0)

    const again = await api(server, 'POST', '/api/campaigns/c1/cleanup-session', { token })
    expect(again.status).toBe(200)
    expect(again.json.hadSession).toBe(false)
  })

  it('is bounded when the engine teardown hangs', async () => {
    const server = await startTestServer({ DESTROY_TIMEOUT_MS: '200', KILL_TIMEOUT_MS: '100' })
    const token = await tokenFor('alice')
    await api(server, 'PUT', '/api/simulator/campaigns/c1/behaviour', {
      token,
      body: { teardown: 'hang' },
    })
    await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    const started = Date.now()
    const cleaned = await api(server, 'POST', '/api/campaigns/c1/cleanup-session', { token })
    expect(cleaned.status).toBe(200)
    expect(Date.now() - started).toBeLessThan(2000)
    expect(server.simulator.counters().forcedStops).toBe(1)
    const metrics = await fetch(`${server.url}/metrics`).then((response) => response.text())
    expect(metrics).toMatch(/^qrvisor_engine_forced_kills_total 1$/m)
  })
})

describe('POST /api/campaigns/:campaignId/logout', () => {
  it('unlinks a linked campaign: the session ends unlinked, the next QR needs a scan, the owner stays', async () => {
    const server = await startTestServer()
    const alice = await tokenFor('alice')
    const bob = await tokenFor('bob')
    const started = await api(server, 'POST', '/api/campaigns/c1/qr-code', { token: alice })
    await waitForStatus(server, alice, 'c1', 'awaitingScan')
    await api(server, 'POST', '/api/simulator/campaigns/c1/scan', { token: alice })
    await waitForStatus(server, alice, 'c1', 'ready')

    const unlinked = await api(server, 'POST', '/api/campaigns/c1/logout', { token: alice })
    expect(unlinked.status).toBe(200)
    expect(unlinked.json).toEqual({
      message: 'WhatsApp unlinked; a new QR code links a phone again',
      campaignId: 'c1',
      sessionId: started.json.sessionId,
      hadSession: true,
      loginDeleted: true,
    })
    expect(server.simulator.liveCount()).toBe(0)
    const connection = await api(server, 'GET', '/api/campaigns/c1/connection', { token: alice })
    expect(connection.json).toMatchObject({ status: 'cleaned', reason: 'unlinked' })
    expect(connection.json.history.at(-1)).toMatchObject({ status: 'cleaned', reason: 'unlinked' })
    expect(await server.store!.getCampaign('c1')).toMatchObject({
      owner: 'alice',
      linked: false,
      wanted: 'stopped',
    })

    expect((await api(server, 'POST', '/api/campaigns/c1/qr-code', { token: bob })).status).toBe(
      403
    )
    await api(server, 'POST', '/api/campaigns/c1/qr-code', { token: alice })
    await waitForStatus(server, alice, 'c1', 'awaitingScan')
  })

  it('is idempotent, and unlinks a campaign with no session', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    await api(server, 'POST', '/api/campaigns/c2/qr-code', { token })
    await api(server, 'POST', '/api/campaigns/c2/cleanup-session', { token })
    for (let i = 0; i < 2; i++) {
      const { status, json } = await api(server, 'POST', '/api/campaigns/c2/logout', { token })
      expect(status).toBe(200)
      expect(json).toMatchObject({ hadSession: false, loginDeleted: true })
    }
  })
})

describe('GET /api/campaigns', () => {
  it("lists the caller's campaigns, and every campaign to an admin", async () => {
    const server = await startTestServer()
    const alice = await tokenFor('alice')
    const bob = await tokenFor('bob')
    const admin = await tokenFor('root', { admin: true })
    await api(server, 'POST', '/api/campaigns/a1/qr-code', { token: alice })
    await api(server, 'POST', '/api/campaigns/b1/qr-code', { token: bob })

    const ids = async (token: string) =>
      (await api(server, 'GET', '/api/campaigns', { token })).json.campaigns
        .map((campaign: { campaignId: string }) => campaign.campaignId)
        .sort()
    expect(await ids(alice)).toEqual(['a1'])
    expect(await ids(bob)).toEqual(['b1'])
    expect(await ids(admin)).toEqual(['a1', 'b1'])
  })

  it('pages with limit and cursor, oldest first, until nextCursor is null', async () => {
    const server = await startTestServer()
    const alice = await tokenFor('alice')
    const bob = await tokenFor('bob')
    const admin = await tokenFor('root', { admin: true })
    for (const [id, token] of [
      ['c0', alice],
      ['c1', bob],
      ['c2', alice],
      ['c3', alice],
      ['c4', bob],
    ] as const) {
      await api(server, 'POST', `/api/campaigns/${id}/qr-code`, { token })
    }
    async function pages(token: string, limit: number, late: string) {
      const seen: string[][] = []
      let cursor: string | null = null
      do {
        const query: string = `?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`
        const { status, json } = await api(server, 'GET', `/api/campaigns${query}`, { token })
        expect(status).toBe(200)
        seen.push(json.campaigns.map((campaign: { campaignId: string }) => campaign.campaignId))
        cursor = json.nextCursor
        if (seen.length === 1) {
          // A campaign started while paging comes at the end; the pages do not shift.
          await api(server, 'POST', `/api/campaigns/${late}/qr-code`, { token: alice })
        }
      } while (cursor !== null)
      return seen
    }
    expect(await pages(admin, 2, 'late1')).toEqual([
      ['c0', 'c1'],
      ['c2', 'c3'],
      ['c4', 'late1'],
    ])
    expect(await pages(alice, 3, 'late2')).toEqual([
      ['c0', 'c2', 'c3'],
      ['late1', 'late2'],
    ])
    expect(await pages(bob, 1, 'late3')).toEqual([['c1'], ['c4']])
  })

  it('answers 100 campaigns by default, at most 1,000, each page with the same fields', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    for (let i = 0; i < 101; i++) {
      await api(server, 'POST', `/api/campaigns/c${String(i).padStart(3, '0')}/qr-code`, { token })
    }
    const first = await api(server, 'GET', '/api/campaigns', { token })
    expect(first.json.campaigns).toHaveLength(100)
    expect(first.json.nextCursor).toEqual(expect.any(String))
    expect(first.json.campaigns[0]).toEqual(
      (await api(server, 'GET', '/api/campaigns/c000/connection', { token })).json
    )
    const rest = await api(server, 'GET', `/api/campaigns?cursor=${first.json.nextCursor}`, {
      token,
    })
    expect(rest.json).toMatchObject({ campaigns: [{ campaignId: 'c100' }], nextCursor: null })
    const all = await api(server, 'GET', '/api/campaigns?limit=1000', { token })
    expect(all.json.campaigns).toHaveLength(101)
    expect(all.json.nextCursor).toBeNull()
  })

  it('narrows the pages to the campaigns claim of the token', async () => {
    const server = await startTestServer()
    const alice = await tokenFor('alice')
    for (const id of ['a', 'b', 'c', 'd']) {
      await api(server, 'POST', `/api/campaigns/${id}/qr-code`, { token: alice })
    }
    const narrow = await tokenFor('alice', { campaigns: ['d', 'b', 'zz'] })
    const first = await api(server, 'GET', '/api/campaigns?limit=1', { token: narrow })
    expect(first.json.campaigns.map((c: { campaignId: string }) => c.campaignId)).toEqual(['b'])
    const second = await api(
      server,
      'GET',
      `/api/campaigns?limit=1&cursor=${first.json.nextCursor}`,
      {
        token: narrow,
      }
    )
    expect(second.json).toMatchObject({ campaigns: [{ campaignId: 'd' }], nextCursor: null })
  })

  it('answers 400 invalid_query for a bad limit or cursor', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    await api(server, 'POST', '/api/campaigns/a/qr-code', { token })
    await api(server, 'POST', '/api/campaigns/b/qr-code', { token })
    const { json } = await api(server, 'GET', '/api/campaigns?limit=1', { token })
    const good: string = json.nextCursor
    const bad = [
      'limit=0',
      'limit=1001',
      'limit=-1',
      'limit=1.5',
      'limit=abc',
      'limit=',
      'limit=1e2',
      'cursor=',
      'cursor=nope',
      `cursor=${good}!`,
      `cursor=${Buffer.from('p0').toString('base64url')}`,
      `cursor=${Buffer.from('p99999999999999999').toString('base64url')}`,
    ]
    for (const query of bad) {
      const answer = await api(server, 'GET', `/api/campaigns?${query}`, { token })
      expect([query, answer.status, answer.json.error.code]).toEqual([query, 400, 'invalid_query'])
    }
    expect((await api(server, 'GET', `/api/campaigns?cursor=${good}`, { token })).status).toBe(200)
  })

  // Issue 8: every refused start left a campaign record, listed here (40,001 entries).
  it('lists nothing for starts refused at capacity', async () => {
    const server = await startTestServer({ MAX_SESSIONS: '1' })
    const token = await tokenFor('alice')
    const admin = await tokenFor('root', { admin: true })
    await api(server, 'POST', '/api/campaigns/first/qr-code', { token })
    for (let i = 0; i < 50; i++) {
      const refused = await api(server, 'POST', `/api/campaigns/refused-${i}/qr-code`, { token })
      expect(refused.status).toBe(503)
    }
    const { json } = await api(server, 'GET', '/api/campaigns', { token: admin })
    expect(json.campaigns.map((c: { campaignId: string }) => c.campaignId)).toEqual(['first'])
    expect(json.nextCursor).toBeNull()
  })
})

describe('ownership', () => {
  it("gives 403 on every route of another user's campaign, and lets an admin act", async () => {
    const server = await startTestServer()
    const alice = await tokenFor('alice')
    const bob = await tokenFor('bob')
    const admin = await tokenFor('root', { admin: true })
    await api(server, 'POST', '/api/campaigns/hers/qr-code', { token: alice })

    const routes: Array<[string, string, unknown?]> = [
      ['POST', '/api/campaigns/hers/qr-code'],
      ['GET', '/api/campaigns/hers/connection'],
      ['POST', '/api/campaigns/hers/cleanup-session'],
      ['POST', '/api/campaigns/hers/logout'],
      ['POST', '/api/simulator/campaigns/hers/scan'],
      ['POST', '/api/simulator/campaigns/hers/disconnect'],
      ['POST', '/api/simulator/campaigns/hers/crash'],
      ['PUT', '/api/simulator/campaigns/hers/behaviour', { startup: 'hang' }],
    ]
    for (const [method, path, body] of routes) {
      const { status, json } = await api(server, method, path, { token: bob, body })
      expect({ method, path, status, code: json.error.code }).toEqual({
        method,
        path,
        status: 403,
        code: 'forbidden',
      })
    }
    expect(
      (await api(server, 'GET', '/api/campaigns/hers/connection', { token: admin })).status
    ).toBe(200)
    const cleaned = await api(server, 'POST', '/api/campaigns/hers/cleanup-session', {
      token: admin,
    })
    expect(cleaned.json.hadSession).toBe(true)
  })

  it('restricts a token to the campaigns of its campaigns claim', async () => {
    const server = await startTestServer()
    const limited = await tokenFor('carol', { campaigns: ['mine'] })
    const limitedAdmin = await tokenFor('root', { admin: true, campaigns: ['mine'] })
    expect(
      (await api(server, 'POST', '/api/campaigns/mine/qr-code', { token: limited })).status
    ).toBe(202)
    const other = await api(server, 'POST', '/api/campaigns/other/qr-code', { token: limited })
    expect(other.status).toBe(403)
    expect(other.json.error.code).toBe('forbidden')
    expect(
      (await api(server, 'GET', '/api/campaigns/other/connection', { token: limitedAdmin })).status
    ).toBe(403)
  })
})

describe('bad input', () => {
  it('answers 400 invalid_campaign_id for ids outside ^[A-Za-z0-9_-]{1,64}$', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    for (const id of ['a.b', 'x'.repeat(65), 'a%20b', '..a', 'caf%C3%A9', "a'b"]) {
      const { status, json } = await api(server, 'GET', `/api/campaigns/${id}/connection`, {
        token,
      })
      expect({ id, status, code: json.error.code }).toEqual({
        id,
        status: 400,
        code: 'invalid_campaign_id',
      })
    }
    expect(server.simulator.counters().started).toBe(0)
  })

  it('answers 400 invalid_body for malformed JSON and unexpected fields, 413 for huge bodies', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const cases: Array<[unknown, number]> = [
      ['{"force": tru', 400],
      ['[1,2', 400],
      [{ force: 'yes' }, 400],
      [{ force: true, extra: 1 }, 400],
      [[true], 400],
      [{ force: false, pad: 'x'.repeat(10_000) }, 413],
    ]
    for (const [body, expected] of cases) {
      const { status, json } = await api(server, 'POST', '/api/campaigns/c1/qr-code', {
        token,
        body,
      })
      expect({ status, code: json.error.code }).toEqual({ status: expected, code: 'invalid_body' })
      expect(json.error.message).toEqual(expect.any(String))
    }
    const bad = await api(server, 'POST', '/api/campaigns/c1/qr-code?force=maybe', { token })
    expect(bad.status).toBe(400)
    const huge = await fetch(`${server.url}/api/campaigns/c1/qr-code`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}` },
      body: new Uint8Array(5 * 1024 * 1024),
    })
    expect(huge.status).toBe(413)
    expect(server.simulator.counters().started).toBe(0)
  })

  it('answers 404 not_found in the error shape for unknown routes', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const { status, json } = await api(server, 'GET', '/api/nothing-here', { token })
    expect(status).toBe(404)
    expect(json).toEqual({ error: { code: 'not_found', message: expect.any(String) } })
  })
})

describe('health, readiness and metrics', () => {
  it('answers /healthz and /readyz without a token, and /readyz 503 once shutting down', async () => {
    const server = await startTestServer()
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200)
    const ready = await fetch(`${server.url}/readyz`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toEqual({
      status: 'ready',
      restore: { total: 0, started: 0, pending: 0, inFlight: 0, abandoned: 0, done: true },
    })
    const metrics = await fetch(`${server.url}/metrics`).then((response) => response.text())
    expect(metrics).toMatch(/^qrvisor_restore_campaigns\{state="total"\} 0$/m)
    expect(metrics).toMatch(/^qrvisor_store_write_queue \d+$/m)
    expect(metrics).toMatch(/^qrvisor_store_write_failing 0$/m)

    const token = await tokenFor('alice')
    await api(server, 'PUT', '/api/simulator/campaigns/slow/behaviour', {
      token,
      body: { teardown: 'hang' },
    })
    await api(server, 'POST', '/api/campaigns/slow/qr-code', { token })
    // A connection opened before the shutdown still gets answers while sessions are torn down.
    const socket = await openSocket(server, { token })
    socket.send({ type: 'subscribe', campaignId: 'slow' })
    await socket.next((m) => m.type === 'subscribed')
    const closing = server.close()
    const readiness = await fetch(`${server.url}/readyz`)
    expect(readiness.status).toBe(503)
    const refused = await api(server, 'POST', '/api/campaigns/late/qr-code', { token })
    expect(refused.status).toBe(503)
    expect(refused.json.error.code).toBe('shutting_down')
    await closing
    expect((await socket.closed).code).toBe(1001)
  })

  it('exposes the Prometheus metrics of the contract', async () => {
    const server = await startTestServer({ SCAN_TIMEOUT_MS: '200' })
    const token = await tokenFor('alice')
    await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    await waitForEnd(server, token, 'c1')
    const response = await fetch(`${server.url}/metrics`)
    expect(response.headers.get('content-type')).toContain('text/plain')
    const text = await response.text()
    for (const name of [
      'qrvisor_sessions{status="awaitingScan"}',
      'qrvisor_session_transitions_total{to="awaitingScan"} 1',
      'qrvisor_session_timeouts_total{reason="scan_timeout"} 1',
      'qrvisor_engine_forced_kills_total',
      'qrvisor_time_to_first_qr_seconds_count 1',
      'qrvisor_time_to_scan_seconds_count',
      'qrvisor_teardown_seconds_count 1',
      'qrvisor_websocket_clients 0',
    ]) {
      expect(text).toContain(name)
    }
  })

  it('counts ended sessions by outcome: two failed sessions are 2, not 0 (issue 9)', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    await api(server, 'PUT', '/api/simulator/campaigns/c1/behaviour', {
      token,
      body: { startup: 'error' },
    })
    for (let attempt = 0; attempt < 2; attempt++) {
      await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
      await waitForEnd(server, token, 'c1')
    }
    await api(server, 'POST', '/api/campaigns/c2/qr-code', { token })
    await waitForStatus(server, token, 'c2', 'awaitingScan')
    await api(server, 'POST', '/api/campaigns/c2/cleanup-session', { token })
    const text = await (await fetch(`${server.url}/metrics`)).text()
    expect(text).toContain(
      'qrvisor_sessions_ended_total{outcome="failed",reason="engine_failed"} 2'
    )
    expect(text).toContain(
      'qrvisor_sessions_ended_total{outcome="cleaned",reason="cleanup_requested"} 1'
    )
    // The gauge counts live sessions: none is left.
    expect(text).toContain('qrvisor_sessions{status="failed"} 0')
    expect(text).toContain('qrvisor_sessions_live 0')
  })
})

describe('simulator routes', () => {
  it('scan moves the session to ready; scan without a QR is 409', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const none = await api(server, 'POST', '/api/simulator/campaigns/c1/scan', { token })
    expect(none.status).toBe(409)
    expect(none.json.error).toEqual({ code: 'nothing_to_do', message: expect.any(String) })

    await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    await waitForStatus(server, token, 'c1', 'awaitingScan')
    expect((await api(server, 'POST', '/api/simulator/campaigns/c1/scan', { token })).status).toBe(
      200
    )
    await waitForStatus(server, token, 'c1', 'ready')

    expect(
      (await api(server, 'POST', '/api/simulator/campaigns/c1/disconnect', { token })).status
    ).toBe(200)
    await waitForEnd(server, token, 'c1')
    const { json } = await api(server, 'GET', '/api/campaigns/c1/connection', { token })
    expect(json).toMatchObject({ status: 'failed', reason: 'logged_out', isConnected: false })
  })

  it('validates the behaviour body', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const path = '/api/simulator/campaigns/c1/behaviour'
    expect((await api(server, 'PUT', path, { token, body: { startup: 'hang' } })).json).toEqual({
      campaignId: 'c1',
      behaviour: { startup: 'hang' },
    })
    for (const body of [{}, { startup: 'explode' }, { teardown: 'normal', other: 1 }, 'nope']) {
      const { status, json } = await api(server, 'PUT', path, { token, body })
      expect({ status, code: json.error.code }).toEqual({ status: 400, code: 'invalid_body' })
    }
  })

  it('do not exist with the wwebjs engine', async () => {
    // The routes are mounted only when a simulator is given; a server without one answers 404.
    const { createApp } = await import('../../src/http/app.ts')
    const server = await startTestServer()
    const { createMetrics } = await import('../../src/metrics.ts')
    const { createQrImageRenderer } = await import('../../src/qr/renderer.ts')
    const { createTokenVerifier } = await import('../../src/auth/verifier.ts')
    const app = createApp({
      sessions: server.sessions,
      verifier: createTokenVerifier(server.config.jwt),
      qrImages: createQrImageRenderer(),
      metrics: createMetrics({ sessions: server.sessions, processMetrics: false }),
    })
    const token = await tokenFor('alice')
    const response = await app.request('/api/simulator/campaigns/c1/scan', {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}` },
    })
    expect(response.status).toBe(404)
  })
})
