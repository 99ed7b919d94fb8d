/**
 * Webhook delivery against a real receiver on 127.0.0.1 (allowPrivate), real time with short
 * retry waits: one suite, run over the SQLite store (deliverySqlite.test.ts) and PostgreSQL
 * (deliveryPostgres.test.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Webhook } from 'standardwebhooks'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { openStore, type CampaignStore } from '../../src/store/index.ts'
import { createWebhooks, type Webhooks, type WebhooksOptions } from '../../src/webhooks/index.ts'
import { newSigningSecret, type WebhookEvent } from '../../src/webhooks/index.ts'
import { startReceiver, waitFor, type Receiver } from './receiver.ts'

const SERVICE_SECRET = newSigningSecret()

function statusEvent(campaignId: string, seq: number, status = 'qr'): WebhookEvent {
  return {
    type: 'session.status',
    data: {
      campaignId,
      sessionId: `${campaignId}-s1`,
      status,
      reason: null,
      detail: null,
      at: 1_767_268_800_000 + seq,
      seq,
    },
  }
}

/** Where each test's store is: a folder (SQLite), and a database URL for PostgreSQL. */
export interface DeliveryStoreFactory {
  create(): Promise<{ dataDir: string; databaseUrl: string | null }>
  destroy(location: { dataDir: string; databaseUrl: string | null }): Promise<void>
}

export const sqliteStores: DeliveryStoreFactory = {
  create: async () => ({
    dataDir: mkdtempSync(join(tmpdir(), 'qrvisor-hooks-')),
    databaseUrl: null,
  }),
  destroy: async ({ dataDir }) => rmSync(dataDir, { recursive: true, force: true }),
}

export function describeDelivery(name: string, stores: DeliveryStoreFactory) {
  describe(`webhook delivery (${name})`, () => {
    let location: { dataDir: string; databaseUrl: string | null }
    let store: CampaignStore | undefined
    const receivers: Receiver[] = []
    const started: Webhooks[] = []

    beforeEach(async () => {
      location = await stores.create()
    })

    afterEach(async () => {
      for (const webhooks of started.splice(0)) await webhooks.stop()
      await store?.close()
      store = undefined
      for (const receiver of receivers.splice(0)) await receiver.close()
      await stores.destroy(location)
    })

    async function receiver(...args: Parameters<typeof startReceiver>) {
      const r = await startReceiver(...args)
      receivers.push(r)
      return r
    }

    async function open(): Promise<CampaignStore> {
      store = await openStore({ ...location, pruneIntervalMs: 0 })
      return store
    }

    async function webhooks(options: Partial<WebhooksOptions> & { url?: string } = {}) {
      const { url, ...rest } = options
      const hooks = createWebhooks({
        store: store ?? (await open()),
        allowPrivate: true,
        retryBaseMs: 20,
        retryMaxMs: 200,
        timeoutMs: 2_000,
        pruneIntervalMs: 0,
        ...(url ? { service: { url, secret: SERVICE_SECRET } } : {}),
        ...rest,
      })
      started.push(hooks)
      await hooks.start()
      return hooks
    }

    it('commits nothing while no endpoint exists, and from the first endpoint set on', async () => {
      const s = await open()
      await s.claim('c1', 'alice')
      const enqueue = vi.spyOn(s.webhooks, 'enqueue')
      const hooks = await webhooks()
      expect(await hooks.emit(statusEvent('c1', 1, 'ready'))).toEqual([])
      expect(enqueue).not.toHaveBeenCalled()
      const r = await receiver()
      await hooks.setCampaignEndpoint('c1', { url: r.url })
      expect(await hooks.emit(statusEvent('c1', 2, 'ready'))).toHaveLength(1)
      expect(enqueue).toHaveBeenCalledTimes(1)
      await waitFor(() => r.received.length === 1)
    })

    it('signs every delivery the Standard Webhooks way: the package verifies it', async () => {
      const r = await receiver()
      const hooks = await webhooks({ url: r.url })
      const [id] = await hooks.emit(statusEvent('c1', 1, 'ready'))
      await waitFor(() => r.received.length === 1)
      const { headers, body } = r.received[0]!
      expect(headers['webhook-id']).toBe(id)
      const verified = new Webhook(SERVICE_SECRET).verify(body, {
        'webhook-id': String(headers['webhook-id']),
        'webhook-timestamp': String(headers['webhook-timestamp']),
        'webhook-signature': String(headers['webhook-signature']),
      })
      expect(verified).toEqual({
        type: 'session.status',
        timestamp: new Date(1_767_268_800_001).toISOString(),
        data: expect.objectContaining({ campaignId: 'c1', status: 'ready', seq: 1 }),
      })
      // Another secret does not verify it.
      expect(() =>
        new Webhook(newSigningSecret()).verify(body, {
          'webhook-id': String(headers['webhook-id']),
          'webhook-timestamp': String(headers['webhook-timestamp']),
          'webhook-signature': String(headers['webhook-signature']),
        })
      ).toThrow()
    })

    it('delivers to a receiver that answers 500 twice then 200: three requests in all, same id', async () => {
      const r = await receiver(({ index }) => (index < 2 ? 500 : 200))
      const hooks = await webhooks({ url: r.url })
      const [id] = await hooks.emit(statusEvent('c1', 1))
      await waitFor(async () => (await hooks.getDelivery(id!))?.status === 'delivered')
      expect(r.received.map((x) => x.status)).toEqual([500, 500, 200])
      expect(new Set(r.received.map((x) => x.headers['webhook-id']))).toEqual(new Set([id]))
      expect(await hooks.getDelivery(id!)).toMatchObject({ attempts: 3, lastError: null })
      expect(hooks.counters()).toMatchObject({ attempts: 3, delivered: 1, failures: 2 })
    })

    it('times out a receiver that hangs and retries it', async () => {
      const r = await receiver(({ index }) => (index === 0 ? 'hang' : 200))
      const hooks = await webhooks({ url: r.url, timeoutMs: 300 })
      const [id] = await hooks.emit(statusEvent('c1', 1))
      await waitFor(async () => (await hooks.getDelivery(id!))?.status === 'delivered')
      expect(r.received.map((x) => x.status)).toEqual([null, 200])
      const listed = await hooks.listDeliveries({ campaignId: 'c1' })
      expect(listed).toEqual([expect.objectContaining({ deliveryId: id, attempts: 2 })])
    })

    it('ends failed, and lists it, when the endpoint is down for every attempt', async () => {
      const down = await receiver()
      const url = down.url
      await down.close()
      receivers.splice(receivers.indexOf(down), 1)
      // A retry window (200 + 400 ms) well beyond the first attempt's start, however loaded the
      // machine: an event first tried after a whole window gets only that attempt.
      const hooks = await webhooks({ url, maxAttempts: 3, retryBaseMs: 200 })
      const [id] = await hooks.emit(statusEvent('c1', 1))
      await waitFor(async () => (await hooks.getDelivery(id!))?.status === 'failed')
      const [failed] = await hooks.listDeliveries({ status: 'failed' })
      expect(failed).toMatchObject({ deliveryId: id, attempts: 3, status: 'failed' })
      expect(failed!.lastError).toMatch(/ECONNREFUSED/)
      expect(failed).not.toHaveProperty('payload')
      expect(hooks.counters()).toMatchObject({ attempts: 3, gaveUp: 1 })
      expect(await hooks.depth()).toMatchObject({ pending: 0, failed: 1 })
    })

    it('sends a failed delivery again when retried by hand, and refuses to retry one delivered', async () => {
      const r = await receiver(() => 503)
      const hooks = await webhooks({ url: r.url, maxAttempts: 2, retryBaseMs: 500 })
      const [id] = await hooks.emit(statusEvent('c1', 1))
      await waitFor(async () => (await hooks.getDelivery(id!))?.status === 'failed')
      expect((await hooks.getDelivery(id!))?.lastError).toBe('HTTP 503: nope')
      r.setAnswer(() => 200)
      expect(await hooks.retryDelivery(id!)).toBe(true)
      await waitFor(async () => (await hooks.getDelivery(id!))?.status === 'delivered')
      expect(r.received.map((x) => x.status)).toEqual([503, 503, 200])
      expect(await hooks.retryDelivery(id!)).toBe(false)
      expect(await hooks.retryDelivery('msg_unknown')).toBe(false)
    })

    it('prunes ended deliveries past the retention, never pending ones', async () => {
      const r = await receiver()
      const hooks = await webhooks({ url: r.url })
      const [delivered] = await hooks.emit(statusEvent('c1', 1))
      await waitFor(async () => (await hooks.getDelivery(delivered!))?.status === 'delivered')
      await hooks.stop()
      started.splice(0)
      const [pending] = await store!.webhooks.enqueue({
        campaignId: 'c1',
        type: 'session.status',
        payload: '{}',
      })
      expect(await store!.webhooks.pruneDeliveries(Date.now() - 60_000)).toBe(0)
      expect(await store!.webhooks.pruneDeliveries(Date.now() + 60_000)).toBe(1)
      expect(await store!.webhooks.getDelivery(delivered!)).toBeUndefined()
      expect(await store!.webhooks.getDelivery(pending!)).toMatchObject({ status: 'pending' })
    })

    it("lists to an owner only the deliveries to their campaigns' endpoints", async () => {
      const r = await receiver()
      const hooks = await webhooks({ url: r.url, concurrency: 0 })
      await store!.claim('a1', 'alice')
      await store!.claim('b1', 'bob')
      const { endpoint: aliceEndpoint } = await hooks.setCampaignEndpoint('a1', { url: r.url })
      await hooks.setCampaignEndpoint('b1', { url: r.url })
      await hooks.emit(statusEvent('a1', 1))
      await hooks.emit(statusEvent('b1', 1))
      expect(await hooks.listDeliveries()).toHaveLength(4)
      const alices = await hooks.listDeliveries({ owner: 'alice' })
      expect(alices).toEqual([
        expect.objectContaining({ campaignId: 'a1', endpointId: aliceEndpoint.endpointId }),
      ])
      expect(await hooks.listDeliveries({ owner: 'carol' })).toEqual([])
    })

    it('disables the endpoint on 410 Gone and cancels what was pending for it', async () => {
      const r = await receiver(() => 410)
      const hooks = await webhooks({ url: r.url })
      const [first] = await hooks.emit(statusEvent('c1', 1))
      const [second] = await hooks.emit(statusEvent('c1', 2))
      await waitFor(async () => (await hooks.getDelivery(second!))?.status === 'cancelled')
      expect(await hooks.getDelivery(first!)).toMatchObject({ status: 'failed', attempts: 1 })
      expect(r.received).toHaveLength(1)
      expect(hooks.counters().disabled).toBe(1)
      // A disabled endpoint gets no new deliveries.
      expect(await hooks.emit(statusEvent('c1', 3))).toEqual([])
    })

    it('delivers after a restart: the event committed, the store closed and reopened, then sent', async () => {
      const r = await receiver()
      const first = await webhooks({ url: r.url, concurrency: 0 })
      const [id] = await first.emit(statusEvent('c1', 1))
      await first.stop()
      started.splice(0)
      await store!.close()
      store = undefined
      expect(r.received).toHaveLength(0)

      await open()
      const second = await webhooks({ url: r.url })
      await waitFor(() => r.received.length === 1)
      expect(r.received[0]!.headers['webhook-id']).toBe(id)
      await waitFor(async () => (await second.getDelivery(id!))?.status === 'delivered')
    })

    it('keeps one campaign in order under a burst of 1,000 events, retries included', async () => {
      let answered = 0
      // Every 7th request fails: each failure blocks its lane until the retry gets through.
      const r = await receiver(() => (++answered % 7 === 0 ? 500 : 200))
      // Retry waits of 1 to 5 ms, and a retry window (5 ms × attempts) longer than the burst, so
      // no event is given up for having waited behind the others.
      const hooks = await webhooks({
        url: r.url,
        retryBaseMs: 1,
        retryMaxMs: 5,
        maxAttempts: 100_000,
      })
      const emits: Array<Promise<string[]>> = []
      for (let seq = 1; seq <= 1_000; seq++) emits.push(hooks.emit(statusEvent('c1', seq)))
      for (let seq = 1; seq <= 50; seq++) emits.push(hooks.emit(statusEvent('c2', seq)))
      await Promise.all(emits)
      await waitFor(() => r.accepted().length === 1_050, 110_000)
      const seqsOf = (campaignId: string) =>
        r
          .accepted()
          .map((x) => JSON.parse(x.body) as { data: { campaignId: string; seq: number } })
          .filter((x) => x.data.campaignId === campaignId)
          .map((x) => x.data.seq)
      expect(seqsOf('c1')).toEqual(Array.from({ length: 1_000 }, (_, i) => i + 1))
      expect(seqsOf('c2')).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
      expect(r.received.length).toBeGreaterThan(1_050)
    }, 120_000)

    it('a dead endpoint holds back nobody else: a campaign endpoint gets its events while the service one hangs', async () => {
      const dead = await receiver(() => 'hang')
      const alive = await receiver()
      const hooks = await webhooks({
        url: dead.url,
        timeoutMs: 10_000,
        concurrency: 8,
        endpointConcurrency: 2,
      })
      await store!.claim('c2', 'alice')
      const { secret } = await hooks.setCampaignEndpoint('c2', { url: alive.url })
      // 100 campaigns' events for the dead receiver first, all due before c2's.
      for (let i = 1; i <= 100; i++) await hooks.emit(statusEvent(`c1-${i}`, 1))
      for (let seq = 1; seq <= 5; seq++) await hooks.emit(statusEvent('c2', seq))
      // Well before the dead receiver's attempts time out.
      await waitFor(() => alive.received.length === 5, 5_000)
      // Once c2's last answer is counted, only the dead receiver's attempts are in flight.
      await waitFor(() => hooks.counters().delivered === 5, 5_000)
      // The dead one took at most its share of attempts, all still in flight.
      expect(hooks.counters().inFlight).toBeLessThanOrEqual(2)
      const last = alive.received[4]!
      expect(() =>
        new Webhook(secret).verify(last.body, {
          'webhook-id': String(last.headers['webhook-id']),
          'webhook-timestamp': String(last.headers['webhook-timestamp']),
          'webhook-signature': String(last.headers['webhook-signature']),
        })
      ).not.toThrow()
    })

    it('leaves nothing behind when stopped: no timer, no socket, no attempt in flight', async () => {
      const r = await receiver(({ index }) => (index === 0 ? 200 : 'hang'))
      const pending = new Set<unknown>()
      const clock = {
        now: () => Date.now(),
        setTimeout(fn: () => void, ms: number) {
          const handle = setTimeout(() => {
            pending.delete(handle)
            fn()
          }, ms)
          pending.add(handle)
          return handle
        },
        clearTimeout(handle: unknown) {
          pending.delete(handle)
          clearTimeout(handle as ReturnType<typeof setTimeout>)
        },
      }
      const hooks = await webhooks({ url: r.url, clock, pruneIntervalMs: 60_000 })
      await hooks.emit(statusEvent('c1', 1))
      const [hung] = await hooks.emit(statusEvent('c1', 2))
      await waitFor(() => r.received.length === 2)
      await hooks.stop()
      started.splice(0)
      expect(pending.size).toBe(0)
      expect(hooks.counters().inFlight).toBe(0)
      await waitFor(() => r.openSockets() === 0, 2_000)
      // The aborted attempt is not counted, and stays pending for the next start.
      expect(await hooks.getDelivery(hung!)).toMatchObject({ status: 'pending', attempts: 0 })
    })
  })
}
