import { describe, expect, it } from 'vitest'
import {
  DEFAULT_RESTART_POLICY,
  pruneRestarts,
  shouldPrune,
  spendRestart,
} from '../../src/session/restartPolicy.ts'

const WINDOW = DEFAULT_RESTART_POLICY.windowMs

/** The supervisor's use of the policy, over a Map as in its context. */
function budget(jitter: number) {
  let recent = new Map<string, readonly number[]>()
  let prunedSize = 0
  return {
    get size() {
      return recent.size
    },
    spend(campaignId: string, now: number): number | undefined {
      const spent = spendRestart(recent.get(campaignId), now, DEFAULT_RESTART_POLICY, jitter)
      if (!spent) return undefined
      recent.set(campaignId, spent.times)
      if (shouldPrune(recent, prunedSize)) {
        recent = pruneRestarts(recent, now, DEFAULT_RESTART_POLICY)
        prunedSize = recent.size
      }
      return spent.delayMs
    },
  }
}

describe('the restart policy', () => {
  it('allows maxRestarts per campaign within the window, with doubling backoff', () => {
    const restarts = budget(0)
    expect([0, 1, 2, 3].map((i) => restarts.spend('a', i * 1_000))).toEqual([
      500,
      1_000,
      2_000,
      undefined,
    ])
    expect(restarts.spend('b', 3_000)).toBe(500)
    // Once the first restart leaves the window, one more is allowed.
    expect(restarts.spend('a', WINDOW)).toBe(2_000)
  })

  it('leaves the times it was given as they were', () => {
    const times = [0, 1_000]
    expect(spendRestart(times, 2_000, DEFAULT_RESTART_POLICY, 0)?.times).toEqual([0, 1_000, 2_000])
    expect(times).toEqual([0, 1_000])
  })

  // Issue 8: nothing per campaign may grow without bound; the restart times never shrank.
  it('keeps only the campaigns restarted within the window, however many ever were', () => {
    const restarts = budget(0.5)
    let largest = 0
    for (let round = 0; round < 100; round++) {
      const now = round * 2 * WINDOW
      for (let i = 0; i < 1_000; i++) restarts.spend(`r${round}-c${i}`, now + i)
      largest = Math.max(largest, restarts.size)
    }
    expect(largest).toBeLessThanOrEqual(2_048)
    // A campaign within its window keeps its budget through a pruning.
    const now = 200 * WINDOW
    for (let i = 0; i < 3; i++) restarts.spend('busy', now + i)
    for (let i = 0; i < 5_000; i++) restarts.spend(`late-${i}`, now + 10)
    expect(restarts.spend('busy', now + 20)).toBeUndefined()
  })
})
