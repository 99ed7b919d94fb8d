import { describe, expect, it } from 'vitest'
import { bearerToken, upgradeToken } from '../../src/auth/bearer.ts'

describe('bearerToken', () => {
  it('reads the token of an Authorization: Bearer header, and nothing else', () => {
    expect(bearerToken('Bearer abc.def')).toBe('abc.def')
    expect(bearerToken('bearer abc')).toBe('abc')
    expect(bearerToken('Basic abc')).toBeNull()
    expect(bearerToken(undefined)).toBeNull()
  })
})

// The WebSocket hub and the inspector read upgrade tokens the same way (issue 10: once).
describe('upgradeToken', () => {
  it('takes ?token= first, since browsers cannot set headers on an upgrade', () => {
    const request = {
      url: '/ws?token=from-query',
      headers: { authorization: 'Bearer from-header' },
    }
    expect(upgradeToken(request)).toBe('from-query')
  })

  it('falls back to the Authorization header, and answers null without either', () => {
    expect(upgradeToken({ url: '/ws', headers: { authorization: 'Bearer from-header' } })).toBe(
      'from-header'
    )
    expect(upgradeToken({ url: '/ws?token=', headers: {} })).toBeNull()
  })
})
