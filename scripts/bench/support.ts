/**
 * What the benchmark processes share: waiting for a condition, the heap after a full GC,
 * percentiles, and arrivals spread over macrotasks as requests arrive.
 *
 * @module
 */

/** Polls `condition` every 10 ms; rejects after `limitMs`. */
export async function until(
  condition: () => boolean,
  what: string,
  limitMs = 600_000
): Promise<void> {
  const deadline = Date.now() + limitMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

const gc = (globalThis as { gc?: () => void }).gc

/** The heap in use after two full collections (with `--expose-gc`). */
export function heapUsed(): number {
  gc?.()
  gc?.()
  return process.memoryUsage().heapUsed
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/**
 * Calls `op(i)` for i < n, each in its own macrotask (`setImmediate`), as requests arrive: the
 * loop runs timers and I/O between two of them. Resolves with what each call returned, once every
 * call's promise has settled.
 */
export async function arriving<T>(n: number, op: (i: number) => T | Promise<T>): Promise<T[]> {
  const pending: Array<T | Promise<T>> = []
  await new Promise<void>((resolve) => {
    let i = 0
    const next = () => {
      pending.push(op(i++))
      if (i < n) setImmediate(next)
      else resolve()
    }
    setImmediate(next)
  })
  return Promise.all(pending)
}

export const round = (x: number) => Math.round(x * 100) / 100
