/**
 * Proxy URLs (issue 14): what `proxy` and `WA_PROXY` accept, and that the credentials are kept
 * apart from the address that is shown.
 */
import { describe, expect, it } from 'vitest'
import { hideSecrets, summarizeContext } from '../src/inspect/redaction.ts'
import { parseProxy, viewOfProxy } from '../src/proxy.ts'

describe('parseProxy', () => {
  it('accepts http, https and socks5, with the scheme’s port by default', () => {
    expect(parseProxy('http://proxy.example:3128')).toEqual({
      ok: true,
      proxy: { server: 'http://proxy.example:3128' },
    })
    expect(parseProxy('https://proxy.example')).toEqual({
      ok: true,
      proxy: { server: 'https://proxy.example:443' },
    })
    expect(parseProxy('socks5://10.0.0.7')).toEqual({
      ok: true,
      proxy: { server: 'socks5://10.0.0.7:1080' },
    })
  })

  it('keeps the credentials apart from the address, decoded', () => {
    expect(parseProxy('http://ann:p%40ss%3Aword@proxy.example:8080/')).toEqual({
      ok: true,
      proxy: {
        server: 'http://proxy.example:8080',
        credentials: { username: 'ann', password: 'p@ss:word' },
      },
    })
    expect(
      viewOfProxy({ server: 'http://p:1', credentials: { username: 'a', password: 'b' } })
    ).toEqual({ server: 'http://p:1', hasCredentials: true })
  })

  it('refuses what Chromium cannot use, saying why without repeating the URL', () => {
    const refusals = [
      'ftp://ann:hunter2@proxy.example',
      'proxy.example:3128',
      'http://ann:hunter2@proxy.example/path',
      'http://proxy.example?x=1',
      'socks5://ann:hunter2@proxy.example:1080',
    ].map((text) => parseProxy(text))
    for (const refusal of refusals) {
      expect(refusal.ok).toBe(false)
      if (!refusal.ok) expect(refusal.reason).not.toContain('hunter2')
    }
    expect(refusals[4]).toMatchObject({ reason: expect.stringContaining('SOCKS5') })
  })
})

describe('the inspector never shows a proxy’s credentials', () => {
  it('hides them in events and contexts', () => {
    const event = {
      type: 'SESSION.REQUESTED',
      proxy: { server: 'http://p:1', credentials: { username: 'ann', password: 'hunter2' } },
    }
    expect(JSON.stringify(hideSecrets(event))).not.toMatch(/ann|hunter2/)
    // Nor a pairing code, nor the phone number it was asked for.
    const pairing = {
      type: 'ENGINE.PAIRING_CODE_RECEIVED',
      code: 'K7QM2XRT',
      context: { pairWithPhoneNumber: '447911123456', pairingCode: { code: 'K7QM2XRT' } },
    }
    expect(JSON.stringify(hideSecrets(pairing))).not.toMatch(/K7QM2XRT|447911123456/)
    expect(JSON.stringify(summarizeContext({ credentials: { username: 'ann' } }))).not.toContain(
      'ann'
    )
  })
})
