/**
 * A proxy per campaign (issue 14) through the API: in a start request, with
 * `PUT /api/campaigns/:campaignId/settings`, and `WA_PROXY` for every campaign that sets none;
 * the credentials are never answered nor logged. Real server, simulated engine (which reports
 * the proxy it was given).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { api, closeAll, eventually, startTestServer, tokenFor } from '../support/edge.ts'

afterEach(closeAll)

const PROXY = 'http://ann:hunter2@proxy.example:3128'

describe('a campaign’s proxy', () => {
  it('comes with the first qr-code request, reaches the engine, and is answered without its credentials', async () => {
    const lines: string[] = []
    const logger = pino(
      { level: 'debug' },
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk))
          done()
        },
      })
    )
    const server = await startTestServer({ LOG_LEVEL: 'debug' }, { logger })
    const token = await tokenFor('alice')
    const started = await api(server, 'POST', '/api/campaigns/spring-sale/qr-code', {
      token,
      body: { proxy: PROXY },
    })
    expect(started.status).toBe(202)
    await eventually(() => server.simulator.proxyInUse('spring-sale') !== null)
    expect(server.simulator.proxyInUse('spring-sale')).toEqual({
      server: 'http://proxy.example:3128',
      hasCredentials: true,
    })
    const settings = await api(server, 'GET', '/api/campaigns/spring-sale/settings', { token })
    expect(settings.json).toEqual({
      campaignId: 'spring-sale',
      proxy: { server: 'http://proxy.example:3128', hasCredentials: true },
    })

    // Changed: the next session goes through the new one; null removes it.
    const put = await api(server, 'PUT', '/api/campaigns/spring-sale/settings', {
      token,
      body: { proxy: 'socks5://10.1.2.3:1080' },
    })
    expect(put.json.proxy).toEqual({ server: 'socks5://10.1.2.3:1080', hasCredentials: false })
    expect(server.simulator.proxyInUse('spring-sale')?.server).toBe('http://proxy.example:3128')
    await api(server, 'POST', '/api/campaigns/spring-sale/qr-code', {
      token,
      body: { force: true },
    })
    await eventually(
      () => server.simulator.proxyInUse('spring-sale')?.server === 'socks5://10.1.2.3:1080'
    )
    const removed = await api(server, 'PUT', '/api/campaigns/spring-sale/settings', {
      token,
      body: { proxy: null },
    })
    expect(removed.json.proxy).toBeNull()

    expect(lines.join('')).toContain('socks5://10.1.2.3:1080')
    expect(lines.join('')).not.toContain('hunter2')
  })

  it('refuses a bad proxy with a clear invalid_body that does not repeat it', async () => {
    const server = await startTestServer()
    const token = await tokenFor('alice')
    const bad = await api(server, 'POST', '/api/campaigns/c1/qr-code', {
      token,
      body: { proxy: 'ftp://ann:hunter2@proxy.example' },
    })
    expect(bad.status).toBe(400)
    expect(bad.json.error.code).toBe('invalid_body')
    expect(bad.json.error.message).toMatch(/^Invalid body: "proxy": must use http/)
    expect(bad.json.error.message).not.toContain('hunter2')
    const socks = await api(server, 'POST', '/api/campaigns/c1/qr-code', {
      token,
      body: { proxy: 'socks5://ann:hunter2@proxy.example' },
    })
    expect(socks.status).toBe(400)
    expect(socks.json.error.message).toContain('SOCKS5')
    expect(server.simulator.counters().started).toBe(0)
  })

  it('is set only on a campaign already started, by its owner', async () => {
    const server = await startTestServer()
    const alice = await tokenFor('alice')
    const never = await api(server, 'PUT', '/api/campaigns/c2/settings', {
      token: alice,
      body: { proxy: PROXY },
    })
    expect(never.status).toBe(404)
    expect(never.json.error.code).toBe('not_found')
    await api(server, 'POST', '/api/campaigns/c2/qr-code', { token: alice })
    const bob = await api(server, 'PUT', '/api/campaigns/c2/settings', {
      token: await tokenFor('bob'),
      body: { proxy: PROXY },
    })
    expect(bob.status).toBe(403)
  })

  it('WA_PROXY applies to every campaign that sets none', async () => {
    const server = await startTestServer({ WA_PROXY: 'http://ops:s3cret@gateway.example:8080' })
    const token = await tokenFor('alice')
    await api(server, 'POST', '/api/campaigns/c3/qr-code', { token })
    await api(server, 'POST', '/api/campaigns/c4/qr-code', {
      token,
      body: { proxy: 'http://own.example:3128' },
    })
    await eventually(() => server.simulator.proxyInUse('c4') !== null)
    expect(server.simulator.proxyInUse('c3')).toEqual({
      server: 'http://gateway.example:8080',
      hasCredentials: true,
    })
    expect(server.simulator.proxyInUse('c4')?.server).toBe('http://own.example:3128')
    // The campaign's own settings: WA_PROXY is the service's, not shown as the campaign's.
    const settings = await api(server, 'GET', '/api/campaigns/c3/settings', { token })
    expect(settings.json.proxy).toBeNull()
  })

  it('is kept in the store: after a restart the campaign still goes through it', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-proxy-'))
    try {
      const token = await tokenFor('alice')
      const first = await startTestServer({ DATA_DIR: dataDir })
      await api(first, 'POST', '/api/campaigns/c5/qr-code', {
        token,
        body: { proxy: 'http://ann:hunter2@proxy.example:3128' },
      })
      await api(first, 'POST', '/api/campaigns/c6/qr-code', { token })
      await api(first, 'PUT', '/api/campaigns/c6/settings', {
        token,
        body: { proxy: 'https://other.example' },
      })
      await first.close()

      const second = await startTestServer({ DATA_DIR: dataDir })
      const c5 = await api(second, 'GET', '/api/campaigns/c5/settings', { token })
      expect(c5.json.proxy).toEqual({ server: 'http://proxy.example:3128', hasCredentials: true })
      const c6 = await api(second, 'GET', '/api/campaigns/c6/settings', { token })
      expect(c6.json.proxy).toEqual({ server: 'https://other.example:443', hasCredentials: false })
      await api(second, 'POST', '/api/campaigns/c5/qr-code', { token })
      await eventually(() => second.simulator.proxyInUse('c5') !== null)
      expect(second.simulator.proxyInUse('c5')).toEqual({
        server: 'http://proxy.example:3128',
        hasCredentials: true,
      })
    } finally {
      await closeAll()
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
