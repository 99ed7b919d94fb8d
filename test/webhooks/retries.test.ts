/**
 * The retry schedule in simulated time: exponential waits from WEBHOOK_RETRY_BASE_MS, the jitter
 * bounds, and WEBHOOK_MAX_ATTEMPTS honoured (a retry limit that was ignored hurt WAHA's users:
 * WAHA #580).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { openStore, type CampaignStore } from '../../src/store/index.ts'
import {
  createWebhooks,
  newSigningSecret,
  retryDelay,
  type WebhookSender,
} from '../../src/webhooks/index.ts'

describe('retryDelay', () => {
  it('doubles from the base, up to the cap, within ±20 %', () => {
    const options = { baseMs: 5_000, maxMs: 60_000 }
    expect([1, 2, 3, 4, 5].map((n) => retryDelay(n, { ...options, random: () => 0.5 }))).toEqual([
      5_000, 10_000, 20_000, 40_000, 60_000,
    ])
    expect(retryDelay(1, { ...options, random: () => 0 })).toBe(4_000)
    expect(retryDelay(1, { ...options, random: () => 0.999_999 })).toBe(6_000)
  })
})

describe('retries in simulated time', () => {
  let dataDir: string
  let store: CampaignStore

  beforeEach(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-hooks-'))
    store = await openStore({ dataDir, pruneIntervalMs: 0 })
    vi.useFakeTimers({ now: 0, toFake: ['setTimeout', 'clearTimeout', 'Date'] })
  })

  afterEach(async () => {
    vi.useRealTimers()
    await store.close()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('tries WEBHOOK_MAX_ATTEMPTS times on the exponential schedule, then gives up for good', async () => {
    const attempts: number[] = []
    const sender: WebhookSender = {
      async send() {
        attempts.push(Date.now())
        return { ok: false, status: 503, error: 'HTTP 503' }
      },
      close() {},
    }
    const hooks = createWebhooks({
      store,
      service: { url: 'http://127.0.0.1:9/hook', secret: newSigningSecret() },
      allowPrivate: true,
      sender,
      random: () => 0.5,
      pruneIntervalMs: 0,
    })
    await hooks.start()
    const [id] = await hooks.emit({
      type: 'session.status',
      data: {
        campaignId: 'c1',
        sessionId: 's1',
        status: 'qr',
        reason: null,
        detail: null,
        at: 0,
        seq: 1,
      },
    })
    for (let i = 0; i < 800; i++) await vi.advanceTimersByTimeAsync(1_000)
    expect(attempts).toEqual([0, 5_000, 15_000, 35_000, 75_000, 155_000, 315_000, 635_000])
    expect(await hooks.getDelivery(id!)).toMatchObject({
      status: 'failed',
      attempts: 8,
      lastError: 'HTTP 503',
    })
    // An hour later, still eight.
    for (let i = 0; i < 60; i++) await vi.advanceTimersByTimeAsync(60_000)
    expect(attempts).toHaveLength(8)
    await hooks.stop()
    expect(vi.getTimerCount()).toBe(0)
  })

  it('gives the events that waited behind a dead head for the whole window one attempt each', async () => {
    const attempts: Array<{ at: number; seq: number }> = []
    const sender: WebhookSender = {
      async send({ body }) {
        attempts.push({
          at: Date.now(),
          seq: (JSON.parse(body) as { data: { seq: number } }).data.seq,
        })
        return { ok: false, status: null, error: 'connect ECONNREFUSED' }
      },
      close() {},
    }
    const hooks = createWebhooks({
      store,
      service: { url: 'http://127.0.0.1:9/hook', secret: newSigningSecret() },
      allowPrivate: true,
      sender,
      random: () => 0.5,
      pruneIntervalMs: 0,
    })
    await hooks.start()
    const ids: string[] = []
    for (let seq = 1; seq <= 3; seq++) {
      ids.push(
        ...(await hooks.emit({
          type: 'session.status',
          data: {
            campaignId: 'c1',
            sessionId: 's1',
            status: 'qr',
            reason: null,
            detail: null,
            at: 0,
            seq,
          },
        }))
      )
    }
    for (let i = 0; i < 700; i++) await vi.advanceTimersByTimeAsync(1_000)
    expect(attempts.map((attempt) => attempt.seq)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 2, 3])
    expect(attempts.slice(-2).map((attempt) => attempt.at)).toEqual([635_000, 635_000])
    for (const id of ids) expect(await hooks.getDelivery(id)).toMatchObject({ status: 'failed' })
    await hooks.stop()
  })
})
