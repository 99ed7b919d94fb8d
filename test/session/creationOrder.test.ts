import { describe, expect, it } from 'vitest'
import { CreationOrder, pageAfter, type Positioned } from '../../src/session/creationOrder.ts'

interface Entry extends Positioned {
  name: string
}

function entries(count: number): Entry[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `e${i}`,
    position: (i + 1) * 10,
    forgotten: false,
  }))
}

function forget(order: CreationOrder<Entry>, entry: Entry): void {
  entry.forgotten = true
  order.noteForgotten()
}

function readAll(order: CreationOrder<Entry>, limit: number): string[][] {
  const pages: string[][] = []
  let after: number | undefined
  do {
    const page = order.page(after, limit)
    pages.push(page.entries.map((entry) => entry.name))
    after = page.next ?? undefined
    if (page.next === null) break
  } while (pages.length < 1000)
  return pages
}

describe('CreationOrder', () => {
  it('pages in creation order, with next null on the page that reaches the end', () => {
    const order = new CreationOrder<Entry>()
    for (const entry of entries(5)) order.add(entry)
    expect(readAll(order, 2)).toEqual([['e0', 'e1'], ['e2', 'e3'], ['e4']])
    expect(readAll(order, 5)).toEqual([['e0', 'e1', 'e2', 'e3', 'e4']])
    expect(order.page(undefined, 5).next).toBeNull()
    expect(order.page(50, 5)).toEqual({ entries: [], next: null })
  })

  it('skips forgotten entries, also when the cursor is one of them, and compacts', () => {
    const order = new CreationOrder<Entry>()
    const all = entries(10)
    for (const entry of all) order.add(entry)
    forget(order, all[1]!)
    forget(order, all[2]!)
    expect(order.size).toBe(8)
    // The cursor names e1's position: the page starts after it, not at the first entry.
    expect(order.page(all[1]!.position, 2).entries.map((e) => e.name)).toEqual(['e3', 'e4'])
    for (const entry of all.slice(3, 8)) forget(order, entry)
    expect(order.size).toBe(3)
    expect(readAll(order, 2)).toEqual([['e0', 'e8'], ['e9']])
    // Forgetting every entry empties it; new entries come after the old positions.
    for (const entry of [all[0]!, all[8]!, all[9]!]) forget(order, entry)
    expect(order.size).toBe(0)
    expect(order.page(undefined, 10)).toEqual({ entries: [], next: null })
    order.add({ name: 'late', position: 1000, forgotten: false })
    expect(readAll(order, 10)).toEqual([['late']])
  })

  it('refuses an empty page', () => {
    expect(() => pageAfter(entries(2), undefined, 0)).toThrow(RangeError)
  })
})
