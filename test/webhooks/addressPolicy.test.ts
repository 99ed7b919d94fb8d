/**
 * Where webhooks may go: public http(s) addresses only, checked when an endpoint is set and again
 * at every connection (DNS rebinding), unless private addresses are allowed.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { openStore, type CampaignStore } from '../../src/store/index.ts'
import {
  checkWebhookUrl,
  createWebhooks,
  isPublicAddress,
  WebhookUrlError,
  type Resolve,
  type Webhooks,
} from '../../src/webhooks/index.ts'
import { startReceiver, waitFor, type Receiver } from './receiver.ts'

const PUBLIC = '93.184.216.34'

describe('isPublicAddress', () => {
  it.each([
    '127.0.0.1',
    '127.1.2.3',
    '10.0.0.1',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::',
    '::1',
    'fd00::1',
    'fc00::1',
    'fe80::1',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
    '::ffff:7f00:1',
    '64:ff9b::7f00:1',
    '2002:7f00:1::',
    'not an address',
  ])('refuses %s', (address) => {
    expect(isPublicAddress(address)).toBe(false)
  })

  it.each([PUBLIC, '1.1.1.1', '2606:4700:4700::1111', '::ffff:93.184.216.34'])(
    'accepts %s',
    (address) => {
      expect(isPublicAddress(address)).toBe(true)
    }
  )
})

describe('checkWebhookUrl', () => {
  const resolveTo =
    (...addresses: string[]): Resolve =>
    async () =>
      addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }))

  it.each([
    ['ftp://example.com/hook', /must be http:\/\/ or https:\/\//],
    ['not a url', /not a valid absolute URL/],
    ['https://user:pw@example.com/hook', /user name or password/],
    ['http://127.0.0.1/hook', /127\.0\.0\.1, which is not a public address/],
    ['http://[::1]/hook', /not a public address/],
    ['http://[::ffff:127.0.0.1]/hook', /not a public address/],
    ['http://169.254.169.254/latest/meta-data', /not a public address/],
    ['http://2130706433/hook', /127\.0\.0\.1/],
    ['http://[fd12::1]/hook', /not a public address/],
  ])('refuses %s', async (url, message) => {
    const error = await checkWebhookUrl(url, {
      allowPrivate: false,
      resolve: resolveTo(PUBLIC),
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(WebhookUrlError)
    expect((error as Error).message).toMatch(message)
  })

  it('refuses a name resolving to a loopback address, or to a private one among public ones', async () => {
    for (const resolve of [
      resolveTo('127.0.0.1'),
      resolveTo(PUBLIC, '10.1.2.3'),
      resolveTo('::1'),
    ]) {
      await expect(
        checkWebhookUrl('https://hooks.example.test/x', { allowPrivate: false, resolve })
      ).rejects.toThrow(/which is not a public address/)
    }
  })

  it('accepts a public https URL, and a private one when private addresses are allowed', async () => {
    await expect(
      checkWebhookUrl('https://hooks.example.test/x', {
        allowPrivate: false,
        resolve: resolveTo(PUBLIC),
      })
    ).resolves.toBeInstanceOf(URL)
    await expect(
      checkWebhookUrl('http://127.0.0.1:9/x', { allowPrivate: true })
    ).resolves.toBeInstanceOf(URL)
  })
})

describe('webhook endpoints and private addresses', () => {
  let dataDir: string
  let store: CampaignStore
  let receiver: Receiver
  let hooks: Webhooks | undefined
  /** What the test's DNS answers for every name. */
  let answer = PUBLIC
  const resolve: Resolve = async () => [{ address: answer, family: 4 }]

  beforeEach(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-hooks-'))
    store = await openStore({ dataDir, pruneIntervalMs: 0 })
    await store.claim('c1', 'alice')
    receiver = await startReceiver()
    answer = PUBLIC
  })

  afterEach(async () => {
    await hooks?.stop()
    hooks = undefined
    await store.close()
    await receiver.close()
    rmSync(dataDir, { recursive: true, force: true })
  })

  async function start(allowPrivate: boolean) {
    hooks = createWebhooks({ store, allowPrivate, resolve, pruneIntervalMs: 0, maxAttempts: 1 })
    await hooks.start()
    return hooks
  }

  const event = {
    type: 'session.status',
    data: {
      campaignId: 'c1',
      sessionId: 's1',
      status: 'ready',
      reason: null,
      detail: null,
      at: 1,
      seq: 1,
    },
  } as const

  it('refuses a private receiver when it is set, and keeps nothing', async () => {
    const webhooks = await start(false)
    await expect(webhooks.setCampaignEndpoint('c1', { url: receiver.url })).rejects.toThrow(
      WebhookUrlError
    )
    expect(await webhooks.getCampaignEndpoint('c1')).toBeUndefined()
  })

  it('refuses the service-wide endpoint at start when it is private', async () => {
    hooks = createWebhooks({
      store,
      service: { url: receiver.url, secret: `whsec_${Buffer.alloc(32, 1).toString('base64')}` },
      pruneIntervalMs: 0,
    })
    await expect(hooks.start()).rejects.toThrow(/not a public address/)
  })

  it('refuses at delivery a name that resolved to a public address when set and to 127.0.0.1 since (rebinding)', async () => {
    const webhooks = await start(false)
    const url = `http://hooks.example.test:${receiver.port}/hook`
    await webhooks.setCampaignEndpoint('c1', { url })
    answer = '127.0.0.1'
    const [id] = await webhooks.emit(event)
    await waitFor(async () => (await webhooks.getDelivery(id!))?.status === 'failed')
    expect((await webhooks.getDelivery(id!))?.lastError).toMatch(
      /resolves to 127\.0\.0\.1, which is not a public address/
    )
    expect(receiver.received).toHaveLength(0)
  })

  it('connects to the address it resolved (and checked), when private addresses are allowed', async () => {
    const webhooks = await start(true)
    answer = '127.0.0.1'
    await webhooks.setCampaignEndpoint('c1', {
      url: `http://hooks.example.test:${receiver.port}/hook`,
    })
    const [id] = await webhooks.emit(event)
    await waitFor(async () => (await webhooks.getDelivery(id!))?.status === 'delivered')
    expect(receiver.received[0]!.headers.host).toBe(`hooks.example.test:${receiver.port}`)
  })

  it('shows a campaign endpoint without its secret, and returns the secret only when set', async () => {
    const webhooks = await start(true)
    const { endpoint, secret } = await webhooks.setCampaignEndpoint('c1', {
      url: receiver.url,
      events: ['session.status', 'session.qr'],
    })
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/)
    expect(endpoint).not.toHaveProperty('secret')
    const shown = await webhooks.getCampaignEndpoint('c1')
    expect(shown).toEqual(endpoint)
    expect(JSON.stringify(shown)).not.toContain(secret.slice(6))
    await expect(
      webhooks.setCampaignEndpoint('c1', { url: receiver.url, events: ['nope'] })
    ).rejects.toThrow(/unknown webhook event nope/)
  })
})
