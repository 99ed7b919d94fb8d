/**
 * The live statechart inspector. It reads `/ws/inspect`, which streams XState's inspection of
 * the supervisor and every campaign actor in batches (see src/ws/inspect.ts for the protocol),
 * and draws each machine once with Mermaid.
 *
 * Built to keep up with thousands of actors: messages only update a model; the screen is
 * redrawn at most once per animation frame; the actor list is virtual (only the rows in view
 * exist in the DOM); the diagram is drawn once per machine and only its highlight changes.
 */
import {
  clockTime,
  connectSocket,
  forgetToken,
  h,
  readClaims,
  socketUrl,
  STATUS_LABELS,
  statusLabel,
  takeToken,
} from './client.js'

const $ = (id) => document.getElementById(id)
const ROW_HEIGHT = 34
const OVERSCAN = 8
const LOG_LIMIT = 100
/** Ended actors stay listed (struck through) this long, so their last steps can be read. */
const ENDED_TTL_MS = 60_000

const machines = new Map()
const actors = new Map()
let order = []
let selectedId = null
let listDirty = true
let detailDirty = true
let frameRequested = false
let dropped = 0
let lastRenderedMachine = null

/** Figures the browser tests read to check the page keeps up. */
const stats = {
  batches: 0,
  records: 0,
  applyMsMax: 0,
  renderMsMax: 0,
  renderMsTotal: 0,
  renders: 0,
  longTasks: 0,
  longTaskMsMax: 0,
  /** Actors known, by top-level state (the session status for campaign actors). */
  actors: 0,
  byState: {},
}
window.__inspectorStats = stats

if ('PerformanceObserver' in window) {
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        stats.longTasks += 1
        stats.longTaskMsMax = Math.max(stats.longTaskMsMax, entry.duration)
      }
    }).observe({ type: 'longtask', buffered: false })
  } catch {
    // Long-task timing is not available everywhere; the page works without it.
  }
}

function start() {
  const token = takeToken()
  if (!token) {
    fatal('No token: open this page from the dashboard, or with #token=… in its address.')
    return
  }
  const claims = readClaims(token)
  $('who').textContent = `${claims.sub}${claims.admin ? ' (admin)' : ''}`
  $('dashboard-link').href = `/#token=${encodeURIComponent(token)}`
  if (!claims.admin) fatal('The inspector is for admins; this token has no admin role.')

  connectSocket(socketUrl('/ws/inspect', token), {
    onOpen() {
      $('stream-state').textContent = 'Live'
    },
    onMessage: handleMessage,
    onState(state, event) {
      if (state === 'connecting') $('stream-state').textContent = 'Connecting…'
      if (state === 'closed') {
        const refused = event && (event.code === 1008 || event.code >= 4000)
        $('stream-state').textContent = refused
          ? `Refused by the service${event.reason ? `: ${event.reason}` : ''}`
          : 'Stream interrupted, reconnecting…'
        if (event && event.code === 4401) forgetToken()
      }
    },
  })

  $('filter-campaign').addEventListener('input', markListDirty)
  $('filter-status').addEventListener('change', markListDirty)
  const list = $('actors')
  list.addEventListener('scroll', () => {
    listDirty = true
    scheduleRender()
  })
  list.addEventListener('click', (event) => {
    const row = event.target.closest('.actor-row')
    if (row) select(row.dataset.id)
  })
  list.addEventListener('keydown', onListKey)
  setInterval(sweepEnded, 5_000)
}

function fatal(message) {
  $('fatal').textContent = message
  $('fatal').hidden = false
}

// ---- The stream --------------------------------------------------------------------------------

function handleMessage(message) {
  const started = performance.now()
  switch (message.type) {
    case 'hello':
      machines.clear()
      actors.clear()
      for (const [machineId, mermaid] of Object.entries(message.machines ?? {})) {
        machines.set(machineId, { mermaid, svg: null })
      }
      for (const actor of message.actors ?? []) upsertActor(actor)
      break
    case 'machine':
      machines.set(message.machineId, { mermaid: message.mermaid, svg: null })
      if (selectedId && actors.get(selectedId)?.machineId === message.machineId) {
        lastRenderedMachine = null
        detailDirty = true
      }
      break
    case 'batch':
      stats.batches += 1
      stats.records += message.records.length
      dropped += message.dropped ?? 0
      for (const record of message.records) applyRecord(record)
      break
  }
  stats.applyMsMax = Math.max(stats.applyMsMax, performance.now() - started)
  listDirty = true
  scheduleRender()
}

function upsertActor(info) {
  const known = actors.get(info.id)
  const actor = known ?? { log: [], ended: false, endedAt: null }
  Object.assign(actor, info)
  actors.set(info.id, actor)
  // The supervisor (a root without a campaign) is selected until someone picks another actor.
  if (!selectedId && info.parentId === null && !info.campaignId) selectedId = info.id
  if (info.id === selectedId) detailDirty = true
  addStatusOption(topState(actor.state))
}

function applyRecord(record) {
  if (record.k === 'actor') {
    upsertActor(record.actor)
    return
  }
  const actor = actors.get(record.id)
  if (!actor) return
  switch (record.k) {
    case 'step':
      actor.state = record.to
      actor.updatedAt = record.at
      actor.log.push(record)
      if (actor.log.length > LOG_LIMIT * 1.5) actor.log.splice(0, actor.log.length - LOG_LIMIT)
      addStatusOption(topState(record.to))
      break
    case 'context':
      actor.context = record.context
      if (record.label) actor.label = record.label
      if (record.campaignId) actor.campaignId = record.campaignId
      break
    case 'end':
      actor.ended = true
      actor.endedAt = Date.now()
      actor.status = record.status
      break
  }
  if (record.id === selectedId) detailDirty = true
}

const statusOptions = new Set()
// The session statuses first, in the contract's order; other machines' states as they appear.
for (const status of Object.keys(STATUS_LABELS)) addStatusOption(status)

function addStatusOption(state) {
  if (!state || statusOptions.has(state)) return
  statusOptions.add(state)
  const select = $('filter-status')
  select.append(h('option', { value: state }, state))
  // (Options are only ever added: a filter someone chose never disappears under them.)
}

function topState(state) {
  return typeof state === 'string' ? state.split('.')[0].split(' | ')[0] : ''
}

function sweepEnded() {
  const now = Date.now()
  let removed = false
  for (const [id, actor] of actors) {
    if (actor.ended && id !== selectedId && now - actor.endedAt > ENDED_TTL_MS) {
      actors.delete(id)
      removed = true
    }
  }
  if (removed) markListDirty()
}

// ---- Rendering -----------------------------------------------------------------------------

function markListDirty() {
  listDirty = true
  scheduleRender()
}

function scheduleRender() {
  if (frameRequested) return
  frameRequested = true
  requestAnimationFrame(render)
}

function render() {
  frameRequested = false
  const started = performance.now()
  if (listDirty) renderList()
  if (detailDirty) renderDetail()
  const spent = performance.now() - started
  stats.renders += 1
  stats.renderMsTotal += spent
  stats.renderMsMax = Math.max(stats.renderMsMax, spent)
}

function visibleOrder() {
  const text = $('filter-campaign').value.trim().toLowerCase()
  const status = $('filter-status').value
  const result = []
  for (const actor of actors.values()) {
    if (status && topState(actor.state) !== status) continue
    if (text && !`${actor.label} ${actor.campaignId ?? ''}`.toLowerCase().includes(text)) continue
    result.push(actor)
  }
  // Roots without a campaign (the supervisor) first, then by label.
  result.sort((a, b) => {
    const rank = (actor) => (actor.campaignId ? 1 : 0)
    return rank(a) - rank(b) || (a.label < b.label ? -1 : a.label > b.label ? 1 : 0)
  })
  return result.map((actor) => actor.id)
}

const rowPool = []

function renderList() {
  listDirty = false
  order = visibleOrder()
  const list = $('actors')
  $('actors-spacer').style.height = `${order.length * ROW_HEIGHT}px`
  const first = Math.max(0, Math.floor(list.scrollTop / ROW_HEIGHT) - OVERSCAN)
  const last = Math.min(
    order.length,
    Math.ceil((list.scrollTop + list.clientHeight) / ROW_HEIGHT) + OVERSCAN
  )
  const needed = last - first
  while (rowPool.length < needed) {
    const badge = h('span', { class: 'badge' })
    const name = h('span', { class: 'name' })
    const element = h('div', { class: 'actor-row', role: 'option' }, name, badge)
    list.append(element)
    rowPool.push({ element, badge, name })
  }
  for (let slot = 0; slot < rowPool.length; slot += 1) {
    const row = rowPool[slot]
    const index = first + slot
    if (slot >= needed) {
      row.element.hidden = true
      continue
    }
    const actor = actors.get(order[index])
    const state = topState(actor.state)
    row.element.hidden = false
    row.element.style.top = `${index * ROW_HEIGHT}px`
    row.element.id = `actor-${actor.id}`
    row.element.dataset.id = actor.id
    row.element.dataset.state = actor.state
    row.element.setAttribute('aria-selected', String(actor.id === selectedId))
    row.element.setAttribute('aria-setsize', String(order.length))
    row.element.setAttribute('aria-posinset', String(index + 1))
    row.element.classList.toggle('ended', actor.ended)
    row.name.textContent = actor.label
    row.badge.textContent = state
    row.badge.dataset.status = state
  }
  if (selectedId && order.includes(selectedId)) {
    list.setAttribute('aria-activedescendant', `actor-${selectedId}`)
  } else {
    list.removeAttribute('aria-activedescendant')
  }
  const total = actors.size
  let ended = 0
  const byState = {}
  for (const actor of actors.values()) {
    if (actor.ended) ended += 1
    const state = topState(actor.state)
    byState[state] = (byState[state] ?? 0) + 1
  }
  stats.actors = total
  stats.byState = byState
  $('list-meta').textContent =
    `${total.toLocaleString()} actor${total === 1 ? '' : 's'} (${ended} ended), ` +
    `${order.length.toLocaleString()} shown` +
    (dropped ? `; ${dropped.toLocaleString()} events dropped to keep up` : '')
}

function onListKey(event) {
  if (order.length === 0) return
  const index = Math.max(0, order.indexOf(selectedId))
  const page = Math.max(1, Math.floor($('actors').clientHeight / ROW_HEIGHT) - 1)
  const moves = {
    ArrowDown: index + 1,
    ArrowUp: index - 1,
    PageDown: index + page,
    PageUp: index - page,
    Home: 0,
    End: order.length - 1,
  }
  if (!(event.key in moves)) return
  event.preventDefault()
  const next = Math.min(order.length - 1, Math.max(0, moves[event.key]))
  select(order[next])
  const list = $('actors')
  const top = next * ROW_HEIGHT
  if (top < list.scrollTop) list.scrollTop = top
  else if (top + ROW_HEIGHT > list.scrollTop + list.clientHeight) {
    list.scrollTop = top + ROW_HEIGHT - list.clientHeight
  }
}

function select(id) {
  if (!actors.has(id)) return
  selectedId = id
  detailDirty = true
  markListDirty()
}

function renderDetail() {
  detailDirty = false
  const actor = selectedId ? actors.get(selectedId) : null
  if (!actor) return
  $('detail-title').textContent = actor.label
  $('detail-meta').textContent =
    `machine “${actor.machineId}” · actor ${actor.id}` +
    (actor.systemId ? ` · systemId ${actor.systemId}` : '') +
    (actor.parentId ? ` · parent ${actor.parentId}` : ' · root') +
    ` · ${actor.ended ? `ended (${actor.status})` : 'running'}`
  const sessionStatus = topState(actor.state)
  $('current-state').textContent =
    `Current state: ${actor.state}` +
    (actor.campaignId && statusLabel(sessionStatus) !== sessionStatus
      ? ` (${statusLabel(sessionStatus)})`
      : '')
  $('current-state').dataset.state = actor.state
  renderDiagram(actor)
  const context = actor.context ?? {}
  $('context').replaceChildren(
    ...Object.entries(context).flatMap(([key, value]) => [
      h('dt', {}, key),
      h('dd', {}, value === null ? 'null' : String(value)),
    ])
  )
  const rows = []
  for (let i = actor.log.length - 1; i >= 0 && rows.length < LOG_LIMIT; i -= 1) {
    const step = actor.log[i]
    rows.push(
      h(
        'tr',
        {},
        h('td', { class: 'mono' }, clockTime(step.at)),
        h('td', { class: 'mono' }, step.event),
        h(
          'td',
          { class: 'mono' },
          step.from === step.to ? step.to : `${step.from ?? '∅'} → ${step.to}`
        )
      )
    )
  }
  $('log').replaceChildren(...rows)
}

let mermaidModule = null
let diagramCounter = 0

async function loadMermaid() {
  if (!mermaidModule) {
    mermaidModule = import('/assets/vendor/mermaid/mermaid.esm.min.mjs').then((module) => {
      const mermaid = module.default
      mermaid.initialize({
        startOnLoad: false,
        securityLevel: 'strict',
        theme: 'neutral',
        fontFamily: 'system-ui, sans-serif',
      })
      return mermaid
    })
  }
  return mermaidModule
}

async function renderDiagram(actor) {
  const machine = machines.get(actor.machineId)
  const container = $('diagram')
  if (!machine) {
    container.replaceChildren(h('p', { class: 'empty' }, `No diagram for “${actor.machineId}”.`))
    lastRenderedMachine = null
    return
  }
  if (lastRenderedMachine !== actor.machineId) {
    lastRenderedMachine = actor.machineId
    if (!machine.svg) {
      container.replaceChildren(h('p', { class: 'empty' }, 'Drawing the statechart…'))
      try {
        const mermaid = await loadMermaid()
        diagramCounter += 1
        const { svg } = await mermaid.render(`statechart-${diagramCounter}`, machine.mermaid)
        machine.svg = svg
      } catch (error) {
        container.replaceChildren(
          h('p', { class: 'banner bad' }, `The statechart could not be drawn: ${error.message}`)
        )
        return
      }
      // Another actor may have been selected while Mermaid was drawing.
      const current = actors.get(selectedId)
      if (!current || current.machineId !== actor.machineId) return
    }
    container.innerHTML = machine.svg
    container.dataset.machine = actor.machineId
  }
  highlight(container, actors.get(selectedId)?.state ?? actor.state)
}

/**
 * Marks the drawing's nodes for the current state: every segment of each active path
 * (`initializing.startingEngine` highlights both the compound state and its child).
 * Mermaid names state nodes `state-<name>-<n>` and compound states' groups by the name itself.
 */
function highlight(container, state) {
  for (const element of container.querySelectorAll('.is-current')) {
    element.classList.remove('is-current')
  }
  if (typeof state !== 'string') return
  const names = new Set()
  for (const path of state.split(' | ')) for (const name of path.split('.')) names.add(name)
  for (const node of container.querySelectorAll('g.node, g.cluster, g[id^="state-"]')) {
    const name = stateNameOf(node)
    if (name && names.has(name)) node.classList.add('is-current')
  }
}

function stateNameOf(node) {
  const match = /^(?:.*?-)?state-(.+?)-\d+$/.exec(node.id)
  if (match) return match[1]
  if (node.classList.contains('cluster')) return node.id.replace(/^.*?-/, '') || node.id
  return node.dataset.id ?? null
}

start()
