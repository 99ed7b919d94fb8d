/**
 * What the page tests share: Debian's Chromium driven by playwright-core (no browser download),
 * the real service on port 0 with the simulated engine, and tokens signed for it.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Hono } from 'hono'
import { SignJWT } from 'jose'
import { chromium, type Browser } from 'playwright-core'
import { loadConfig } from '../../../src/config.ts'
import { silentLogger } from '../../../src/logger.ts'
import { startServer, type RunningServer } from '../../../src/server.ts'

export const CHROMIUM_PATH = process.env.CHROME_PATH || '/usr/bin/chromium'
export const SCREENSHOTS_DIR = 'artifacts/screenshots'

/** Launches headless Chromium, or fails with a message that says how to get it. */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `The page tests need Chromium at ${CHROMIUM_PATH} (none is downloaded). ` +
        'Install it with `apt-get install -y chromium` (.ci/run does), or set CHROME_PATH.'
    )
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
    ],
  })
}

export interface TestService {
  server: RunningServer
  secret: string
  token(sub: string, options?: { admin?: boolean }): Promise<string>
  /** Calls the API as `token`; resolves with the parsed JSON body, throws on a non-2xx answer. */
  api(token: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>>
}

/** The real service on 127.0.0.1:0 with the simulated engine and the inspector on. */
export async function startService(
  env: Record<string, string> = {},
  extraRoutes: Hono[] = []
): Promise<TestService> {
  const secret = randomBytes(32).toString('base64url')
  // A DATA_DIR of its own (simulated logins are saved there), removed when the server closes.
  const dataDir = mkdtempSync(join(tmpdir(), 'qrvisor-pages-'))
  const config = loadConfig({
    DATA_DIR: dataDir,
    WA_ENGINE: 'simulated',
    JWT_SECRET: secret,
    INSPECT: 'true',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    ...env,
  })
  const running = await startServer(config, { logger: silentLogger, extraRoutes }).catch(
    (error: unknown) => {
      rmSync(dataDir, { recursive: true, force: true })
      throw error
    }
  )
  const server: RunningServer = {
    ...running,
    async close() {
      await running.close()
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
  return {
    server,
    secret,
    token: (sub, { admin = false } = {}) =>
      new SignJWT({ roles: admin ? ['admin'] : [] })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(sub)
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign(new TextEncoder().encode(secret)),
    async api(token, method, path, body) {
      const response = await fetch(`${server.url}${path}`, {
        method,
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      })
      const text = await response.text()
      if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`)
      return JSON.parse(text) as Record<string, unknown>
    },
  }
}

export function screenshotPath(name: string): string {
  mkdirSync(SCREENSHOTS_DIR, { recursive: true })
  return `${SCREENSHOTS_DIR}/${name}.png`
}

/** The 8 bytes every PNG file starts with. */
export const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]

export function isPngDataUrl(dataUrl: string): boolean {
  const prefix = 'data:image/png;base64,'
  if (!dataUrl.startsWith(prefix)) return false
  const bytes = Buffer.from(dataUrl.slice(prefix.length), 'base64')
  return bytes.length > 100 && PNG_SIGNATURE.every((byte, index) => bytes[index] === byte)
}
