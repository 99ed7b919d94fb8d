/**
 * Claims committed in groups: how claims are grouped, how many groups are in flight, and that a
 * failed group fails its own claims only.
 */
import { describe, expect, it } from 'vitest'
import type { ClaimResult } from '../../src/store/campaignStore.ts'
import { ClaimBatcher, type Claim } from '../../src/store/claimBatcher.ts'

/** A database stand-in whose commits the test completes (or fails) one by one. */
function standIn() {
  const commits: Array<{
    claims: Claim[]
    done(): void
    fail(error: Error): void
  }> = []
  const claimMany = (claims: Claim[]) =>
    new Promise<ClaimResult[]>((resolve, reject) => {
      commits.push({
        claims,
        done: () => resolve(claims.map((claim) => ({ owner: claim.owner, created: true }))),
        fail: reject,
      })
    })
  return { commits, claimMany }
}

const tick = () => new Promise((resolve) => setImmediate(resolve))

describe('ClaimBatcher', () => {
  it('commits the claims of one tick together', async () => {
    const { commits, claimMany } = standIn()
    const batcher = new ClaimBatcher(claimMany, { maxBatch: 100, maxInFlight: 1 })
    const results = ['a', 'b', 'c'].map((id) => batcher.claim(id, 'alice'))
    await tick()
    expect(commits.map((commit) => commit.claims.map((claim) => claim.campaignId))).toEqual([
      ['a', 'b', 'c'],
    ])
    commits[0]!.done()
    expect(await Promise.all(results)).toEqual([
      { owner: 'alice', created: true },
      { owner: 'alice', created: true },
      { owner: 'alice', created: true },
    ])
  })

  it('keeps at most maxInFlight groups in flight; later claims wait and go together', async () => {
    const { commits, claimMany } = standIn()
    const batcher = new ClaimBatcher(claimMany, { maxBatch: 100, maxInFlight: 2 })
    batcher.claim('a', 'alice')
    await tick()
    batcher.claim('b', 'alice')
    await tick()
    batcher.claim('c', 'alice')
    await tick()
    batcher.claim('d', 'alice')
    await tick()
    expect(commits).toHaveLength(2)
    commits[0]!.done()
    await tick()
    expect(commits.map((commit) => commit.claims.map((claim) => claim.campaignId))).toEqual([
      ['a'],
      ['b'],
      ['c', 'd'],
    ])
    commits[1]!.done()
    commits[2]!.done()
    await batcher.idle()
  })

  it('splits a burst into groups of maxBatch', async () => {
    const { commits, claimMany } = standIn()
    const batcher = new ClaimBatcher(claimMany, { maxBatch: 2, maxInFlight: 3 })
    for (const id of ['a', 'b', 'c', 'd', 'e']) batcher.claim(id, 'alice')
    await tick()
    expect(commits.map((commit) => commit.claims.length)).toEqual([2, 2, 1])
    for (const commit of commits) commit.done()
    await batcher.idle()
  })

  it('fails the claims of a failed group only', async () => {
    const { commits, claimMany } = standIn()
    const batcher = new ClaimBatcher(claimMany, { maxBatch: 100, maxInFlight: 2 })
    const first = batcher.claim('a', 'alice')
    await tick()
    const second = batcher.claim('b', 'bob')
    await tick()
    commits[0]!.fail(new Error('connection refused'))
    commits[1]!.done()
    await expect(first).rejects.toThrow('connection refused')
    expect(await second).toEqual({ owner: 'bob', created: true })
  })
})
