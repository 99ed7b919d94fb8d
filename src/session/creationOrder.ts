/**
 * Entries kept in the order they were created, read a page at a time from a position: the
 * campaign list is paged this way without building (or sorting) every entry for each page.
 *
 * Each entry carries its position (increasing with creation) and a `forgotten` flag. Forgetting
 * is lazy: the entry stays in the array, skipped by pages, until forgotten entries are the larger
 * part and the array is compacted (amortised O(1) per entry). A page costs a binary search plus
 * the entries it reads.
 *
 * @module
 */

export interface Positioned {
  /** Increases with every entry created; never reused. */
  readonly position: number
  /** Set (by the owner of the entry) when it is forgotten; its orders then skip it. */
  forgotten: boolean
}

export interface Page<T> {
  entries: T[]
  /** The position to read the next page after; null when this page reaches the end. */
  next: number | null
}

export class CreationOrder<T extends Positioned> {
  private entries: T[] = []
  private forgottenCount = 0

  /** Entries not forgotten. */
  get size(): number {
    return this.entries.length - this.forgottenCount
  }

  /** Appends an entry; its position must be greater than every position added before. */
  add(entry: T): void {
    this.entries.push(entry)
  }

  /** Counts an entry as forgotten (its `forgotten` flag is already set). */
  noteForgotten(): void {
    this.forgottenCount++
    if (this.forgottenCount * 2 > this.entries.length) {
      this.entries = this.entries.filter((entry) => !entry.forgotten)
      this.forgottenCount = 0
    }
  }

  /** At most `limit` entries after `after` (from the first when undefined), oldest first. */
  page(after: number | undefined, limit: number): Page<T> {
    return pageAfter(this.entries, after, limit)
  }
}

/**
 * A page of `sorted` (ascending by position): at most `limit` entries not forgotten whose position
 * is greater than `after`, and where the next page starts.
 */
export function pageAfter<T extends Positioned>(
  sorted: readonly T[],
  after: number | undefined,
  limit: number
): Page<T> {
  if (!(limit >= 1)) throw new RangeError(`a page holds at least one entry (limit: ${limit})`)
  let index = after === undefined ? 0 : firstIndexAfter(sorted, after)
  const entries: T[] = []
  for (; index < sorted.length; index++) {
    const entry = sorted[index]!
    if (entry.forgotten) continue
    if (entries.length === limit) return { entries, next: entries.at(-1)!.position }
    entries.push(entry)
  }
  return { entries, next: null }
}

/** The index of the first entry whose position is greater than `position` (binary search). */
function firstIndexAfter(sorted: readonly Positioned[], position: number): number {
  let low = 0
  let high = sorted.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if (sorted[middle]!.position <= position) low = middle + 1
    else high = middle
  }
  return low
}
