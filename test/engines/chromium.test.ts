/**
 * Finding Chromium, and the small pure parts of the wwebjs engine (capacity, disconnect reasons).
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  chromiumNotFoundMessage,
  findChromium,
  requireChromium,
} from '../../src/engines/chromium.ts'
import {
  PLANNED_BYTES_PER_SESSION,
  recommendedMaxSessions,
  terminationKindForDisconnect,
} from '../../src/engines/wwebjs.ts'

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
