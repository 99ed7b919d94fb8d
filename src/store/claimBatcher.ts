/**
 * Claims, committed in groups: the claims made while one group's transaction is in flight are
 * committed together by the next one. Each claim still resolves only once its own transaction
 * has committed; under a burst of start requests this turns thousands of commits (round trips,
 * for PostgreSQL) into a few.
 *
 * @module
 */
import type { ClaimResult } from './campaignStore.ts'

export interface Claim {
  campaignId: string
  owner: string
}

interface Waiting extends Claim {
  resolve(result: ClaimResult): void
  reject(error: unknown): void
}

/** Commits the claims in one transaction; the results are in the claims' order. */
export type ClaimMany = (claims: Claim[]) => Promise<ClaimResult[]>

export class ClaimBatcher {
  private waiting: Waiting[] = []
  private running: Promise<void> | undefined
  private scheduled = false

  constructor(
    private readonly claimMany: ClaimMany,
    private readonly maxBatch: number
  ) {}

  claim(campaignId: string, owner: string): Promise<ClaimResult> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ campaignId, owner, resolve, reject })
      this.kick()
    })
  }

  /** Resolves once every claim made so far has settled. */
  async idle(): Promise<void> {
    while (this.running || this.scheduled) await (this.running ?? Promise.resolve())
  }

  private kick(): void {
    if (this.running || this.scheduled || this.waiting.length === 0) return
    // Claims made in the same tick share the transaction.
    this.scheduled = true
    queueMicrotask(() => {
      this.scheduled = false
      this.running = this.commitNext().finally(() => {
        this.running = undefined
        this.kick()
      })
    })
  }

  private async commitNext(): Promise<void> {
    const batch = this.waiting.splice(0, this.maxBatch)
    try {
      const results = await this.claimMany(batch)
      batch.forEach((claim, index) => claim.resolve(results[index]!))
    } catch (error) {
      for (const claim of batch) claim.reject(error)
    }
  }
}
