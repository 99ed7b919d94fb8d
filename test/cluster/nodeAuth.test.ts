/**
 * Node-to-node signatures: a forwarded request is answered only with a valid signature of its
 * own method and path, made with the same CLUSTER_SECRET, recently.
 */
import { describe, expect, it } from 'vitest'
import { createNodeSigner } from '../../src/cluster/nodeAuth.ts'

const SECRET = 's'.repeat(40)

describe('createNodeSigner', () => {
  it('verifies its own signature and names the sending node', () => {
    const signer = createNodeSigner(SECRET)
    const header = signer.sign('POST', '/api/campaigns/c1/session', 'node-a:3000')
    expect(signer.verify(header, 'POST', '/api/campaigns/c1/session')).toBe('node-a:3000')
  })

  it('refuses another method, another path, another secret, or a forged node', () => {
    const signer = createNodeSigner(SECRET)
    const header = signer.sign('GET', '/api/campaigns/c1/connection', 'node-a')
    expect(signer.verify(header, 'DELETE', '/api/campaigns/c1/connection')).toBeUndefined()
    expect(signer.verify(header, 'GET', '/api/campaigns/c2/connection')).toBeUndefined()
    expect(
      createNodeSigner('t'.repeat(40)).verify(header, 'GET', '/api/campaigns/c1/connection')
    ).toBeUndefined()
    const forged = header.replace(/^node-a/, 'node-b')
    expect(signer.verify(forged, 'GET', '/api/campaigns/c1/connection')).toBeUndefined()
  })

  it('refuses a signature older or newer than a minute, and garbage', () => {
    let now = 1_000_000
    const signer = createNodeSigner(SECRET, () => now)
    const header = signer.sign('GET', '/x', 'node-a')
    now += 60_001
    expect(signer.verify(header, 'GET', '/x')).toBeUndefined()
    now -= 120_002
    expect(signer.verify(header, 'GET', '/x')).toBeUndefined()
    for (const junk of ['', '.', 'a.b.c', 'node-a.123', '%E0%A4%A.1.x', 'a.1e3.x']) {
      expect(signer.verify(junk, 'GET', '/x')).toBeUndefined()
    }
  })
})
