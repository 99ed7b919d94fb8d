/**
 * Webhooks in the running service: the sessions' events reach a real local receiver, signed the
 * Standard Webhooks way, from the service-wide endpoint and a campaign's own; the routes that set
 * endpoints and list and retry deliveries; a restart between an event and its delivery.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Webhook } from 'standardwebhooks'
import { afterEach, describe, expect, it } from 'vitest'
import { api, closeAll, startTestServer, tokenFor, type TestServer } from '../support/edge.ts'
import { startReceiver, waitFor, type Receiver } from './receiver.ts'

const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`
const receivers: Receiver[] = []
const dirs: string[] = []

afterEach(async () => {
  await closeAll()
  for (const receiver of receivers.splice(0)) await receiver.close()
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

async function receiver(answer?: Parameters<typeof startReceiver>[0]) {
  const started = await startReceiver(answer)
  receivers.push(started)
  return started
}

interface StatusEvent {
  type: string
  timestamp: string
  data: { campaignId: string; status?: string; seq: number; qr?: string; reason: string | null }
}

/** The bodies the receiver accepted, verified with the secret (a bad signature throws). */
function verified(at: Receiver, secret: string): StatusEvent[] {
  const webhook = new Webhook(secret)
  return at.accepted().map(
    ({ body, headers }) =>
      webhook.verify(body, {
        'webhook-id': String(headers['webhook-id']),
        'webhook-timestamp': String(headers['webhook-timestamp']),
        'webhook-signature': String(headers['webhook-signature']),
      }) as StatusEvent
  )
}

async function linkCampaign(server: TestServer, token: string, campaignId: string) {
  await api(server, 'POST', `/api/campaigns/${campaignId}/qr-code`, { token })
  await waitFor(async () => {
    const { json } = await api(server, 'GET', `/api/campaigns/${campaignId}/connection`, { token })
    return json.status === 'awaitingScan'
  })
  await api(server, 'POST', `/api/simulator/campaigns/${campaignId}/scan`, { token })
}

describe('webhooks in the service', () => {
  it('posts every status change to the service-wide endpoint, signed, in seq order', async () => {
    const hook = await receiver()
    const server = await startTestServer({
      WEBHOOK_URL: hook.url,
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_ALLOW_PRIVATE: 'true',
    })
    const token = await tokenFor('alice')
    await linkCampaign(server, token, 'c1')
    await waitFor(() => verified(hook, SECRET).some((e) => e.data.status === 'ready'))
    const events = verified(hook, SECRET)
    expect(events.map((e) => [e.type, e.data.status])).toEqual([
      ['session.status', 'initializing'],
      ['session.status', 'awaitingScan'],
      ['session.status', 'authenticating'],
      ['session.status', 'ready'],
    ])
    const seqs = events.map((e) => e.data.seq)
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
    // No session.qr unless asked for: the raw QR is a login capability.
    expect(hook.received.every((r) => !r.body.includes('"session.qr"'))).toBe(true)
    const metrics = await fetch(`${server.url}/metrics`).then((r) => r.text())
    expect(metrics).toMatch(/^qrvisor_webhook_delivered_total 4$/m)
    expect(metrics).toMatch(/^qrvisor_webhook_queue\{status="pending"\} 0$/m)
  })

  it("lets a campaign's owner set its endpoint, with a secret shown once, and session.qr on request", async () => {
    const hook = await receiver()
    const server = await startTestServer({ WEBHOOK_ALLOW_PRIVATE: 'true' })
    const alice = await tokenFor('alice')
    const bob = await tokenFor('bob')
    await api(server, 'POST', '/api/campaigns/c1/qr-code', { token: alice })

    const refused = await api(server, 'PUT', '/api/campaigns/c1/webhook', {
      token: bob,
      body: { url: hook.url },
    })
    expect(refused.status).toBe(403)
    const set = await api(server, 'PUT', '/api/campaigns/c1/webhook', {
      token: alice,
      body: { url: hook.url, events: ['session.status', 'session.qr'] },
    })
    expect(set.status).toBe(200)
    expect(set.json).toMatchObject({
      campaignId: 'c1',
      url: hook.url,
      events: ['session.status', 'session.qr'],
      disabledAt: null,
      secret: expect.stringMatching(/^whsec_/),
    })
    const read = await api(server, 'GET', '/api/campaigns/c1/webhook', { token: alice })
    expect(read.status).toBe(200)
    expect(read.json.secret).toBeUndefined()
    expect(JSON.stringify(read.json)).not.toContain(set.json.secret)

    await api(server, 'POST', '/api/campaigns/c1/qr-code', { token: alice, body: { force: true } })
    await waitFor(() => verified(hook, set.json.secret).some((e) => e.type === 'session.qr'))
    const qr = verified(hook, set.json.secret).find((e) => e.type === 'session.qr')!
    expect(qr.data.qr).toEqual(expect.any(String))

    const removed = await api(server, 'DELETE', '/api/campaigns/c1/webhook', { token: alice })
    expect(removed.json).toEqual({ campaignId: 'c1', removed: true })
    const again = await api(server, 'DELETE', '/api/campaigns/c1/webhook', { token: alice })
    expect(again.json).toEqual({ campaignId: 'c1', removed: false })
    expect((await api(server, 'GET', '/api/campaigns/c1/webhook', { token: alice })).status).toBe(
      404
    )
  })

  it('refuses a private receiver unless WEBHOOK_ALLOW_PRIVATE, and a campaign nobody started', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const unowned = await api(server, 'PUT', '/api/campaigns/c9/webhook', {
      token,
      body: { url: 'https://example.com/hook' },
    })
    expect(unowned.status).toBe(404)
    await api(server, 'POST', '/api/campaigns/c1/qr-code', { token })
    for (const url of [
      'http://127.0.0.1:9/hook',
      'http://169.254.169.254/latest',
      'ftp://x.org/',
    ]) {
      const { status, json } = await api(server, 'PUT', '/api/campaigns/c1/webhook', {
        token,
        body: { url },
      })
      expect({ url, status, code: json.error.code }).toEqual({
        url,
        status: 400,
        code: 'invalid_webhook_url',
      })
    }
    const unknownEvent = await api(server, 'PUT', '/api/campaigns/c1/webhook', {
      token,
      body: { url: 'https://example.com/hook', events: ['session.everything'] },
    })
    expect(unknownEvent.status).toBe(400)
    expect(unknownEvent.json.error.code).toBe('invalid_body')
  })

  it('lists failed deliveries to their owner only, and retries one by hand', async () => {
    const hook = await receiver(() => 500)
    const server = await startTestServer({
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_MAX_ATTEMPTS: '2',
      WEBHOOK_RETRY_BASE_MS: '20',
    })
    const alice = await tokenFor('alice')
    const bob = await tokenFor('bob')
    const admin = await tokenFor('root', { admin: true })
    await api(server, 'POST', '/api/campaigns/c1/qr-code', { token: alice })
    await api(server, 'PUT', '/api/campaigns/c1/webhook', { token: alice, body: { url: hook.url } })
    await api(server, 'POST', '/api/campaigns/c1/cleanup-session', { token: alice })

    let failed: Array<{ deliveryId: string; lastError: string; attempts: number }> = []
    await waitFor(async () => {
      const pending = await api(server, 'GET', '/api/webhooks/deliveries?status=pending', {
        token: alice,
      })
      const { json } = await api(server, 'GET', '/api/webhooks/deliveries?status=failed', {
        token: alice,
      })
      failed = json.deliveries
      return pending.json.deliveries.length === 0 && failed.length >= 2
    })
    // At most WEBHOOK_MAX_ATTEMPTS each (an event that waited behind the others past the retry
    // window gets one: docs/webhooks.md, "Delivery"), and nothing sent beyond them.
    for (const delivery of failed) {
      expect(delivery.lastError).toBe('HTTP 500: nope')
      expect([1, 2]).toContain(delivery.attempts)
    }
    expect(hook.received).toHaveLength(failed.reduce((sum, d) => sum + d.attempts, 0))
    const forBob = await api(server, 'GET', '/api/webhooks/deliveries', { token: bob })
    expect(forBob.json.deliveries).toEqual([])
    const byAdmin = await api(server, 'GET', '/api/webhooks/deliveries', { token: admin })
    expect(byAdmin.json.deliveries.length).toBeGreaterThanOrEqual(2)

    const id = failed[0]!.deliveryId
    expect(
      (await api(server, 'POST', `/api/webhooks/deliveries/${id}/retry`, { token: bob })).status
    ).toBe(404)
    hook.setAnswer(() => 200)
    const retried = await api(server, 'POST', `/api/webhooks/deliveries/${id}/retry`, {
      token: alice,
    })
    expect(retried.status).toBe(200)
    expect(retried.json).toMatchObject({ deliveryId: id, status: 'pending', attempts: 0 })
    await waitFor(() => hook.accepted().length === 1)
    const twice = await api(server, 'POST', `/api/webhooks/deliveries/${id}/retry`, {
      token: alice,
    })
    expect(twice.status).toBe(409)
    for (const nope of ['msg_nope', 'x'.repeat(300)]) {
      const unknown = await api(server, 'POST', `/api/webhooks/deliveries/${nope}/retry`, {
        token: admin,
      })
      expect({ status: unknown.status, code: unknown.json.error.code }).toEqual({
        status: 404,
        code: 'not_found',
      })
    }
  })

  it('delivers after a restart what it could not deliver before', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-webhooks-'))
    dirs.push(dataDir)
    const hook = await receiver(() => 503)
    const env = {
      DATA_DIR: dataDir,
      WEBHOOK_URL: hook.url,
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_RETRY_BASE_MS: '100',
    }
    const first = await startTestServer(env)
    const token = await tokenFor('alice')
    await api(first, 'POST', '/api/campaigns/c1/qr-code', { token })
    await api(first, 'POST', '/api/campaigns/c1/cleanup-session', { token })
    await waitFor(() => hook.received.length >= 1)
    await first.close()
    expect(hook.accepted()).toHaveLength(0)

    hook.setAnswer(() => 200)
    await startTestServer(env)
    await waitFor(() => verified(hook, SECRET).some((e) => e.data.status === 'cleaned'))
    const statuses = verified(hook, SECRET).map((e) => e.data.status)
    expect(statuses.slice(0, 2)).toEqual(['initializing', statuses[1]])
    expect(statuses).toContain('cleaned')
  })
})
