/**
 * Describes a machine from its own definition: a Mermaid state diagram and Markdown tables of
 * its states, events, transitions, guards and delays. `npm run statecharts` writes them to
 * statecharts.md, and the inspector draws the same diagrams, so neither is ever hand-drawn.
 *
 * @module
 */
import type { AnyStateMachine, AnyStateNode, AnyTransitionDefinition } from 'xstate'
import type { MachineDocs } from '../session/catalog.ts'

export interface TransitionRow {
  from: string
  event: string
  guard: string | null
  to: string
  actions: string[]
}

/** Every transition of a machine, including eventless and delayed ones. */
export function listTransitions(machine: AnyStateMachine): TransitionRow[] {
  const rows: TransitionRow[] = []
  const visit = (node: AnyStateNode) => {
    for (const [eventType, transitions] of node.transitions) {
      for (const transition of transitions) rows.push(row(node, eventType, transition))
    }
    for (const transition of node.always ?? []) rows.push(row(node, '', transition))
    for (const child of Object.values(node.states) as AnyStateNode[]) visit(child)
  }
  visit(machine.root)
  return rows
}

/** A Mermaid `stateDiagram-v2` of the machine. */
export function toMermaid(machine: AnyStateMachine): string {
  const lines = ['stateDiagram-v2']
  const rootHandlers: string[] = []
  const draw = (node: AnyStateNode, indent: string) => {
    const children = Object.values(node.states) as AnyStateNode[]
    if (node.initial?.target?.[0]) lines.push(`${indent}[*] --> ${node.initial.target[0].key}`)
    for (const child of children) {
      if (Object.keys(child.states).length > 0) {
        lines.push(`${indent}state ${child.key} {`)
        draw(child, `${indent}  `)
        lines.push(`${indent}}`)
      }
    }
    for (const child of children) {
      for (const t of ownTransitions(child)) {
        lines.push(`${indent}${child.key} --> ${t.to} : ${t.label}`)
      }
      if (child.type === 'final') lines.push(`${indent}${child.key} --> [*]`)
    }
  }
  draw(machine.root, '  ')
  for (const [eventType, transitions] of machine.root.transitions) {
    for (const transition of transitions) {
      const target = transition.target?.[0]?.key
      const handler = `${prettyEvent(eventType)}${target ? ` → ${target}` : ''}`
      if (!rootHandlers.includes(handler)) rootHandlers.push(handler)
    }
  }
  if (rootHandlers.length > 0) {
    const anchor = Object.keys(machine.root.states)[0]
    lines.push(`  note right of ${anchor} : From any state - ${rootHandlers.join(', ')}`)
  }
  return lines.join('\n')
}

/** Markdown tables of the machine's states, events, transitions, guards and delays. */
export function toMarkdownTables(machine: AnyStateMachine, docs: MachineDocs): string {
  const out: string[] = []
  out.push('| state | tags | meaning | entry |', '| --- | --- | --- | --- |')
  const visitStates = (node: AnyStateNode, prefix: string) => {
    for (const child of Object.values(node.states) as AnyStateNode[]) {
      const name = `${prefix}${child.key}`
      const entry = child.entry.map(actionName).filter(Boolean).join(', ')
      const kind = child.type === 'final' ? ' (final)' : ''
      const tags = child.tags.map((tag) => `\`${tag}\``).join(', ')
      out.push(`| \`${name}\`${kind} | ${tags} | ${cell(child.description ?? '')} | ${entry} |`)
      visitStates(child, `${name}.`)
    }
  }
  visitStates(machine.root, '')

  out.push('', '| event | meaning |', '| --- | --- |')
  for (const [event, meaning] of Object.entries(docs.events))
    out.push(`| \`${event}\` | ${cell(meaning)} |`)

  out.push('', '| from | event | guard | to | actions |', '| --- | --- | --- | --- | --- |')
  for (const t of listTransitions(machine)) {
    const event = t.event === '' ? '(always)' : `\`${prettyEvent(t.event)}\``
    out.push(`| ${t.from} | ${event} | ${t.guard ?? ''} | ${t.to} | ${t.actions.join(', ')} |`)
  }

  if (Object.keys(docs.guards).length > 0) {
    out.push('', '| guard | meaning |', '| --- | --- |')
    for (const [guard, meaning] of Object.entries(docs.guards))
      out.push(`| \`${guard}\` | ${cell(meaning)} |`)
  }
  if (Object.keys(docs.delays).length > 0) {
    out.push('', '| delay | meaning |', '| --- | --- |')
    for (const [delay, meaning] of Object.entries(docs.delays))
      out.push(`| \`${delay}\` | ${cell(meaning)} |`)
  }
  return out.join('\n')
}

function ownTransitions(node: AnyStateNode): Array<{ to: string; label: string }> {
  const result: Array<{ to: string; label: string }> = []
  for (const [eventType, transitions] of node.transitions) {
    for (const transition of transitions) {
      const guard = guardName(transition.guard)
      const label = `${prettyEvent(eventType)}${guard ? ` [${guard}]` : ''}`
      result.push({ to: transition.target?.[0]?.key ?? node.key, label })
    }
  }
  for (const transition of node.always ?? []) {
    const guard = guardName(transition.guard)
    result.push({
      to: transition.target?.[0]?.key ?? node.key,
      label: guard ? `[${guard}]` : 'always',
    })
  }
  return result
}

function row(
  node: AnyStateNode,
  eventType: string,
  transition: AnyTransitionDefinition
): TransitionRow {
  return {
    from: node === node.machine.root ? '(any)' : node.path.join('.'),
    event: eventType,
    guard: guardName(transition.guard),
    to: transition.target?.map((t: AnyStateNode) => t.path.join('.')).join(', ') ?? '(stays)',
    actions: (transition.actions as unknown[]).map(actionName).filter(Boolean),
  }
}

/** `xstate.after.scanTimeout.campaign.awaitingScan` reads better as `after scanTimeout`. */
export function prettyEvent(eventType: string): string {
  const after = /^xstate\.after\.([^.]+)\./.exec(eventType)
  if (after) return `after ${after[1]}`
  return eventType
}

function guardName(guard: unknown): string | null {
  if (!guard) return null
  if (typeof guard === 'string') return guard
  if (typeof guard === 'object' && 'type' in guard) return String((guard as { type: unknown }).type)
  return 'inline'
}

function actionName(action: unknown): string {
  if (typeof action === 'string') return action
  if (action && typeof action === 'object' && 'type' in action) {
    const type = String((action as { type: unknown }).type)
    // Built-in actions resolved from a named action keep the name; others are internal.
    return type.startsWith('xstate.') ? '' : type
  }
  return ''
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ')
}
