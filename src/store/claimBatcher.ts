/**
 * Claims, committed in groups: claims made in the same tick share one statement, and the claims
 * made while `maxInFlight` groups are being committed wait and go together in the next one. Each
 * claim still resolves only once its own group has committed. Under a burst of start requests
 * this turns thousands of commits (round trips, for PostgreSQL) into a few; alone, a claim is
 * committed at once.
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

/** Commits the claims; the results are in the claims' order. */
export type ClaimMany = (claims: Claim[]) => Promise<ClaimResult[]>

export interface ClaimBatcherOptions {
  /** Claims per group. */
  maxBatch: number
  /** Groups being committed at once (1 for SQLite: its one connection runs one at a time). */
  maxInFlight: number
}

export class ClaimBatcher {
  private waiting: Waiting[] = []
  private readonly inFlight = new Set<Promise<void>>()
  private scheduled = false

  constructor(
    private readonly claimMany: ClaimMany,
    private readonly options: ClaimBatcherOptions
  ) {}

  claim(campaignId: string, owner: string): Promise<ClaimResult> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ campaignId, owner, resolve, reject })
      this.kick()
    })
  }

  /** Resolves once every claim made so far has settled. */
  async idle(): Promise<void> {
    while (this.scheduled || this.inFlight.size > 0) {
      await (this.inFlight.values().next().value ?? Promise.resolve())
    }
  }

  private kick(): void {
    if (this.scheduled || this.waiting.length === 0) return
    if (this.inFlight.size >= this.options.maxInFlight) return
    // The claims made in the rest of this tick join the group.
    this.scheduled = true
    queueMicrotask(() => {
      this.scheduled = false
      while (this.waiting.length > 0 && this.inFlight.size < this.options.maxInFlight) {
        const group = this.commit(this.waiting.splice(0, this.options.maxBatch)).finally(() => {
          this.inFlight.delete(group)
          this.kick()
        })
        this.inFlight.add(group)
      }
    })
  }

  private async commit(group: Waiting[]): Promise<void> {
    try {
      const results = await this.claimMany(group)
      group.forEach((claim, index) => claim.resolve(results[index]!))
    } catch (error) {
      for (const claim of group) claim.reject(error)
    }
  }
}
