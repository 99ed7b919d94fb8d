import { describe, expect, it } from 'vitest'
import { DEFAULT_RESTART_POLICY, RestartBudget } from '../../src/session/restartBudget.ts'

const WINDOW = DEFAULT_RESTART_POLICY.windowMs

describe('RestartBudget', () => {
  it('allows maxRestarts per campaign within the window, with doubling backoff', () => {
    const budget = new RestartBudget(DEFAULT_RESTART_POLICY, () => 0)
    expect([0, 1, 2, 3].map((i) => budget.spend('a', i * 1_000))).toEqual([
      500,
      1_000,
      2_000,
      undefined,
    ])
    expect(budget.spend('b', 3_000)).toBe(500)
    // Once the first restart leaves the window, one more is allowed.
    expect(budget.spend('a', WINDOW)).toBe(2_000)
  })

  // Issue 8: nothing per campaign may grow without bound; the restart times never shrank.
  it('keeps only the campaigns restarted within the window, however many ever were', () => {
    const budget = new RestartBudget(DEFAULT_RESTART_POLICY, () => 0.5)
    let largest = 0
    for (let round = 0; round < 100; round++) {
      const now = round * 2 * WINDOW
      for (let i = 0; i < 1_000; i++) budget.spend(`r${round}-c${i}`, now + i)
      largest = Math.max(largest, budget.size)
    }
    expect(largest).toBeLessThanOrEqual(2_048)
    // A campaign within its window keeps its budget through a sweep.
    const now = 200 * WINDOW
    for (let i = 0; i < 3; i++) budget.spend('busy', now + i)
    for (let i = 0; i < 5_000; i++) budget.spend(`late-${i}`, now + 10)
    expect(budget.spend('busy', now + 20)).toBeUndefined()
  })
})
