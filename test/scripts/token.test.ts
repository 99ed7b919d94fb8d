/**
 * `npm run token` in a child process: it signs only what the service would accept, because it
 * checks the environment with the service's own rules (issue 9: `JWT_SECRET=abc npm run token`
 * printed a token the server refused).
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { createTokenVerifier } from '../../src/auth/verifier.ts'
import { loadConfig } from '../../src/config.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

function token(
  env: Record<string, string>,
  args = ['--sub', 'alice']
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'scripts/token.ts', ...args],
      { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env } },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stdout, stderr })
    )
  })
}

describe('npm run token', () => {
  it('refuses a secret the service would refuse, saying why, and prints no token', async () => {
    const { code, stdout, stderr } = await token({ JWT_SECRET: 'abc' })
    expect(code).toBe(1)
    expect(stdout).toBe('')
    expect(stderr).toMatch(/JWT_SECRET must be at least 32 characters/)
    expect(stderr).not.toContain('abc')
  })

  it('refuses when no secret is set, or the service verifies with a public key', async () => {
    expect((await token({})).stderr).toMatch(/JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL/)
    const jwks = await token({ JWT_JWKS_URL: 'https://issuer.example/jwks.json' })
    expect(jwks.code).toBe(1)
    expect(jwks.stderr).toMatch(/JWT_JWKS_URL.*signs only with JWT_SECRET/)
  })

  it("prints a token the service's verifier accepts, with its issuer and audience", async () => {
    const env = {
      JWT_SECRET: 'a-secret-long-enough-for-hs256-0123456789',
      JWT_ISSUER: 'https://issuer.example',
      JWT_AUDIENCE: 'qrvisor',
    }
    const { code, stdout } = await token(env, ['--sub', 'alice', '--campaigns', 'a,b'])
    expect(code).toBe(0)
    const identity = await createTokenVerifier(loadConfig(env).jwt).verify(stdout.trim())
    expect(identity).toEqual({
      userId: 'alice',
      admin: false,
      campaigns: new Set(['a', 'b']),
      validUntil: expect.any(Number),
    })
  })
})
