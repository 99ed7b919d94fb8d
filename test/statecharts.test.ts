import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { renderStatecharts, STATECHARTS_PATH } from '../scripts/statecharts.ts'
import { listTransitions } from '../src/inspect/diagram.ts'
import { describedMachines } from '../src/session/catalog.ts'
import { SESSION_STATUSES } from '../src/session/status.ts'

describe('statecharts.md', () => {
  it('is what `npm run statecharts` generates from the machines (run it after changing a machine)', () => {
    expect(readFileSync(STATECHARTS_PATH, 'utf8')).toBe(renderStatecharts())
  })

  it('has a top-level state for every status of the contract, and nothing else', () => {
    const campaign = describedMachines().find((m) => m.id === 'campaign')!.machine
    expect(Object.keys(campaign.root.states).sort()).toEqual([...SESSION_STATUSES].sort())
  })

  it('documents every event the machines handle', () => {
    for (const { machine, docs } of describedMachines()) {
      const handled = new Set(
        listTransitions(machine)
          .map((t) => t.event)
          .filter((e) => e !== '' && !e.startsWith('xstate.after.'))
      )
      for (const event of handled)
        expect(docs.events, `${machine.id}: ${event}`).toHaveProperty([event])
    }
  })
})
