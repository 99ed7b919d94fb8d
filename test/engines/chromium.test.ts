/**
 * Finding Chromium, the environment it starts with, and the small pure parts of the wwebjs engine
 * (capacity, disconnect reasons, how a thrown value is described).
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WebSocket, type ErrorEvent } from 'ws'
import { afterAll, describe, expect, it } from 'vitest'
import {
  chromiumEnvironment,
  chromiumNotFoundMessage,
  findChromium,
  requireChromium,
} from '../../src/engines/wwebjs/chromium.ts'
import {
  PLANNED_BYTES_PER_SESSION,
  recommendedMaxSessions,
} from '../../src/engines/wwebjs/capacity.ts'
import { describeThrown, terminationKindForDisconnect } from '../../src/engines/wwebjs/failures.ts'

const scratch = mkdtempSync(join(tmpdir(), 'qrvisor-chromium-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

function executable(path: string): string {
  mkdirSync(join(path, '..'), { recursive: true })
  writeFileSync(path, '#!/bin/sh\n')
  chmodSync(path, 0o755)
  return path
}

const GiB = 1024 ** 3

describe('findChromium', () => {
  it('uses CHROME_PATH when it is set, before any system browser', () => {
    const chrome = executable(join(scratch, 'custom', 'chrome'))
    const system = executable(join(scratch, 'system', 'chromium'))
    expect(findChromium({ CHROME_PATH: chrome }, [system])).toBe(chrome)
  })

  it('refuses a CHROME_PATH that is not an executable file instead of picking another browser', () => {
    const system = executable(join(scratch, 'system2', 'chromium'))
    const notExecutable = join(scratch, 'plain-file')
    writeFileSync(notExecutable, '')
    expect(findChromium({ CHROME_PATH: join(scratch, 'missing') }, [system])).toBeUndefined()
    expect(findChromium({ CHROME_PATH: notExecutable }, [system])).toBeUndefined()
    expect(findChromium({ CHROME_PATH: scratch }, [system])).toBeUndefined()
    const message = chromiumNotFoundMessage({ CHROME_PATH: join(scratch, 'missing') })
    expect(message).toContain('CHROME_PATH')
    expect(message).toContain('apt-get install -y chromium')
  })

  it('takes the first system location that exists', () => {
    const second = executable(join(scratch, 'system3', 'google-chrome'))
    const env = { PUPPETEER_CACHE_DIR: join(scratch, 'no-cache') }
    expect(findChromium(env, [join(scratch, 'system3', 'chromium'), second])).toBe(second)
  })

  it("falls back to the newest browser in puppeteer's cache", () => {
    const cache = join(scratch, 'puppeteer-cache')
    executable(join(cache, 'chrome', 'linux-131.0.6778.85', 'chrome-linux64', 'chrome'))
    const newest = executable(
      join(cache, 'chrome', 'linux-146.0.7680.31', 'chrome-linux64', 'chrome')
    )
    expect(findChromium({ PUPPETEER_CACHE_DIR: cache }, [])).toBe(newest)
  })

  it('finds nothing, and says what to do, when there is no browser at all', () => {
    const env = { PUPPETEER_CACHE_DIR: join(scratch, 'empty-cache') }
    expect(findChromium(env, [join(scratch, 'nowhere', 'chromium')])).toBeUndefined()
    const message = chromiumNotFoundMessage(env)
    expect(message).toContain('CHROME_PATH')
    expect(message).toContain('apt-get install -y chromium')
    expect(() => requireChromium({ CHROME_PATH: join(scratch, 'missing') })).toThrow(/CHROME_PATH/)
  })
})

describe('recommendedMaxSessions', () => {
  it('fits the planned memory per session into what is left after the reserve', () => {
    expect(recommendedMaxSessions(2 * GiB)).toBe(2)
    expect(recommendedMaxSessions(1.5 * GiB)).toBe(1)
    expect(recommendedMaxSessions(8 * GiB)).toBe(
      Math.floor((8 * GiB - 1 * GiB) / PLANNED_BYTES_PER_SESSION)
    )
    // Big machines keep a tenth for everything else.
    expect(recommendedMaxSessions(64 * GiB)).toBe(
      Math.floor((64 * GiB * 0.9) / PLANNED_BYTES_PER_SESSION)
    )
  })

  it('never answers less than one session', () => {
    expect(recommendedMaxSessions(0)).toBe(1)
    expect(recommendedMaxSessions(512 * 1024 * 1024)).toBe(1)
    expect(recommendedMaxSessions(Number.NaN)).toBe(1)
  })
})

describe('terminationKindForDisconnect', () => {
  it('treats every way the phone unlinks the device as logged_out', () => {
    for (const reason of ['LOGOUT', 'UNPAIRED', 'UNPAIRED_IDLE']) {
      expect(terminationKindForDisconnect(reason)).toBe('logged_out')
    }
  })

  it('treats every other reason as engine_error', () => {
    for (const reason of [
      'CONFLICT',
      'TOS_BLOCK',
      'SMB_TOS_BLOCK',
      'PROXYBLOCK',
      'DEPRECATED_VERSION',
      'UNLAUNCHED',
      'Max qrcode retries reached',
      'SOMETHING_NEW',
    ]) {
      expect(terminationKindForDisconnect(reason)).toBe('engine_error')
    }
  })
})

describe('chromiumEnvironment', () => {
  it("passes what Chromium needs and nothing of the service's configuration", () => {
    const env = chromiumEnvironment({
      PATH: '/usr/bin',
      HOME: '/root',
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
      TZ: 'UTC',
      TMPDIR: '/var/tmp',
      DISPLAY: ':0',
      XDG_RUNTIME_DIR: '/run/user/0',
      FONTCONFIG_FILE: '/etc/fonts/fonts.conf',
      https_proxy: 'http://proxy.internal:3128',
      NO_PROXY: 'localhost',
      JWT_SECRET: 'x'.repeat(32),
      JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----',
      DATA_DIR: '/var/lib/qrvisor',
      PORT: '3000',
      NODE_OPTIONS: '--max-old-space-size=512',
      AWS_SECRET_ACCESS_KEY: 'not for a browser',
      npm_config_registry: 'https://registry.npmjs.org/',
    })
    expect(Object.keys(env).sort()).toEqual(
      [
        'PATH',
        'HOME',
        'LANG',
        'LC_ALL',
        'TZ',
        'TMPDIR',
        'DISPLAY',
        'XDG_RUNTIME_DIR',
        'FONTCONFIG_FILE',
        'https_proxy',
        'NO_PROXY',
      ].sort()
    )
  })
})

// Issue 8: a process group killed during launch was recorded as `initialize() failed: [object
// Object]`, because puppeteer rethrows the DevTools WebSocket's `ErrorEvent`, which is not an Error.
describe('describeThrown', () => {
  it("describes a WebSocket ErrorEvent (what puppeteer throws when Chromium dies while it connects) by its error's message", async () => {
    // A real ErrorEvent from ws, the library puppeteer uses: a connection to a port nobody serves.
    const event = await new Promise<ErrorEvent>((resolve) => {
      const socket = new WebSocket('ws://127.0.0.1:1')
      socket.onerror = resolve
    })
    expect(String(event)).toBe('[object Object]')
    expect(describeThrown(event)).toBe('connect ECONNREFUSED 127.0.0.1:1')
  })

  it('describes Errors by their message (their name when it is empty), strings as they are', () => {
    expect(describeThrown(new Error('Target closed'))).toBe('Target closed')
    expect(describeThrown(new TypeError())).toBe('TypeError')
    expect(describeThrown('auth timeout')).toBe('auth timeout')
    expect(describeThrown({ message: 'socket hang up', type: 'error' })).toBe('socket hang up')
    expect(describeThrown({ error: new Error('inner') })).toBe('inner')
  })

  it('shows any other value as util.inspect does, on one line', () => {
    expect(describeThrown({ code: 'ECONNRESET', nested: { a: { b: 1 } } })).toBe(
      "{ code: 'ECONNRESET', nested: { a: [Object] } }"
    )
    expect(describeThrown(undefined)).toBe('undefined')
    expect(describeThrown(null)).toBe('null')
    expect(describeThrown(42)).toBe('42')
    expect(describeThrown(Symbol('gone'))).toBe('Symbol(gone)')
    expect(describeThrown('')).toBe("''")
  })

  it('keeps the first line only, at most 300 characters', () => {
    expect(describeThrown(new Error('first line\n    at frame (x.js:1:1)'))).toBe('first line')
    const long = describeThrown('x'.repeat(1_000))
    expect(long).toHaveLength(300)
    expect(long.endsWith('...')).toBe(true)
  })
})
