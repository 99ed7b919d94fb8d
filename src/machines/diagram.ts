/**
 * A Mermaid `stateDiagram-v2` of a machine, drawn from its definition.
 *
 * TODO: stand-in on branch `web` until the lead's `src/machines/diagram.ts` lands on main; on
 * merge, main's file replaces this one (same export: `toMermaid(machine)`).
 *
 * @module
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate'

/**
 * @example
 * toMermaid(campaignMachine) // 'stateDiagram-v2\n  [*] --> idle\n  idle --> initializing: START …'
 */
export function toMermaid(machine: AnyStateMachine): string {
  const lines = ['stateDiagram-v2']
  drawChildren(machine.root, lines, '  ')
  return lines.join('\n')
}

function drawChildren(node: AnyStateNode, lines: string[], indent: string): void {
  const initial = node.initial?.target?.[0]
  if (initial) lines.push(`${indent}[*] --> ${initial.key}`)
  for (const child of Object.values(node.states) as AnyStateNode[]) {
    if (Object.keys(child.states).length > 0) {
      lines.push(`${indent}state ${child.key} {`)
      drawChildren(child, lines, `${indent}  `)
      lines.push(`${indent}}`)
    }
    if (child.type === 'final') lines.push(`${indent}${child.key} --> [*]`)
  }
  for (const child of Object.values(node.states) as AnyStateNode[]) {
    for (const [eventType, transitions] of child.transitions) {
      for (const transition of transitions) {
        for (const target of transition.target ?? []) {
          lines.push(`${indent}${child.key} --> ${target.key}: ${label(eventType)}`)
        }
      }
    }
    for (const transition of child.always ?? []) {
      for (const target of transition.target ?? []) {
        lines.push(`${indent}${child.key} --> ${target.key}: always`)
      }
    }
  }
}

function label(eventType: string): string {
  const after = /^xstate\.after\.([^.]+)\./.exec(eventType)
  if (after) return `after ${after[1]}`
  return eventType.replace(/^xstate\.(done|error)\.actor\.(.+)$/, '$1 $2').replace(/:/g, ' ')
}
