import { describe, expect, it } from 'vitest'
import {
  explainEngineFailure,
  failureHint,
  MAX_DETAIL_LENGTH,
  redactSecrets,
} from '../../src/engines/failureHint.ts'

// Real details, as the wwebjs engine reports them (Chromium 156, puppeteer 24, whatsapp-web.js
// 1.34.7): offline, through a proxy that is down, through a proxy that refuses CONNECT, a
// Chromium killed by the OOM killer's signal, a bad CHROME_PATH.
const OFFLINE = 'initialize() failed: net::ERR_NAME_NOT_RESOLVED at https://web.whatsapp.com/'
const PROXY_DOWN =
  'initialize() failed: net::ERR_PROXY_CONNECTION_FAILED at https://web.whatsapp.com/'
const PROXY_REFUSES =
  'initialize() failed: net::ERR_TUNNEL_CONNECTION_FAILED at https://web.whatsapp.com/'
const KILLED = 'Chromium exited unexpectedly (killed by SIGKILL)'
const NO_BROWSER = 'Browser was not found at the configured executablePath (/opt/chrome/chrome)'
const LAUNCH_FAILED = 'Failed to launch the browser process:  Code: 1'

describe('failureHint (issue 9: a failure must say why)', () => {
  it('recognises a DNS failure and names the host', () => {
    expect(failureHint(OFFLINE)).toBe('this machine cannot reach web.whatsapp.com (DNS)')
  })

  it('recognises a proxy that cannot be reached, and one that refuses the tunnel', () => {
    expect(failureHint(PROXY_DOWN)).toBe('the proxy cannot be reached (check the proxy settings)')
    expect(failureHint(PROXY_REFUSES)).toBe('a proxy refused the connection to web.whatsapp.com')
  })

  it('recognises a Chromium killed by a signal, and a crash without one', () => {
    expect(failureHint(KILLED)).toBe('Chromium was killed (out of memory?)')
    for (const detail of [
      'Chromium exited unexpectedly',
      'initialize() failed: Protocol error: Connection closed.',
      'initialize() failed: Protocol error (Page.navigate): Target closed',
    ]) {
      expect(failureHint(detail), detail).toBe(
        'Chromium stopped without warning (killed, or out of memory?)'
      )
    }
  })

  it('recognises a browser that cannot be started', () => {
    expect(failureHint(NO_BROWSER)).toMatch(/CHROME_PATH/)
    expect(failureHint(LAUNCH_FAILED)).toMatch(/Chromium could not be started/)
    expect(failureHint('initialize() failed: auth timeout')).toMatch(/WhatsApp Web never started/)
  })

  it('says nothing it does not know', () => {
    expect(failureHint('WhatsApp disconnected: CONFLICT')).toBeNull()
    expect(failureHint('simulated start failure')).toBeNull()
  })
})

describe('explainEngineFailure', () => {
  it('puts the hint first and keeps the engine’s own words', () => {
    expect(explainEngineFailure(OFFLINE)).toBe(
      `This machine cannot reach web.whatsapp.com (DNS) — ${OFFLINE}`
    )
    expect(explainEngineFailure('WhatsApp disconnected: CONFLICT')).toBe(
      'WhatsApp disconnected: CONFLICT'
    )
  })

  it('never lets a URL’s credentials or a token through', () => {
    const proxy =
      'initialize() failed: net::ERR_PROXY_CONNECTION_FAILED via http://bob:hunter2@10.0.0.1:3128 at https://web.whatsapp.com/'
    const explained = explainEngineFailure(proxy)
    expect(explained).not.toContain('hunter2')
    expect(explained).not.toContain('bob')
    expect(explained).toContain('http://[redacted]@10.0.0.1:3128')
    expect(explained).toMatch(/^The proxy cannot be reached/)

    const jwt =
      'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU'
    for (const [leaky, secret] of [
      [`request failed: Authorization: Bearer ${jwt}`, jwt],
      [`request failed: Bearer abc123def456`, 'abc123def456'],
      [`GET https://api.example.com/hook?token=s3cr3t-value&x=1 failed`, 's3cr3t-value'],
      [`upstream said {"password":"pa55word"}`, 'pa55word'],
      [`stale session ${jwt} refused`, jwt],
      [
        'api key 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 rejected',
        '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
      ],
    ] as const) {
      const safe = explainEngineFailure(leaky)
      expect(safe, leaky).not.toContain(secret)
      expect(safe, leaky).toContain('[redacted]')
    }
  })

  it('leaves ordinary words, hosts and paths alone', () => {
    for (const text of [OFFLINE, KILLED, NO_BROWSER, 'WhatsApp disconnected: LOGOUT']) {
      expect(redactSecrets(text)).toBe(text)
    }
  })

  it('stays short', () => {
    expect(explainEngineFailure(`boom ${'x '.repeat(1000)}`).length).toBe(MAX_DETAIL_LENGTH)
  })
})
