/**
 * The live statechart inspector. It reads `/ws/inspect`, which streams XState's inspection of
 * the supervisor and every campaign actor in batches (see src/inspect/socket.ts for the protocol),
 * and draws each machine once with Mermaid.
 *
 * Built to keep up with thousands of actors: messages only update a model; the screen is
 * redrawn at most once per animation frame; the actor list is virtual (only the rows in view
 * exist in the DOM); the diagram is drawn once per machine and only its highlight changes.
 *
 * The diagram is shown at a size whose labels can be read (the campaign machine is larger than
 * the pane) and moved by dragging, the arrow keys or the scroll bars; + and − zoom.
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

/** The smallest zoom a diagram opens at: its 16 px labels stay at least 11 px. */
const READABLE_ZOOM = 0.7
const MIN_ZOOM = 0.05
const MAX_ZOOM = 3

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
    if (!row) return
    select(row.dataset.id)
    // On a phone the selected actor is shown below the list: go there.
    if (window.matchMedia('(max-width: 700px)').matches) {
      $('detail').scrollIntoView({ block: 'start' })
    }
  })
  list.addEventListener('keydown', onListKey)
  wireDiagramView()
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
  // A hello's actors carry their last steps (`log`), so the log starts with what just happened.
  Object.assign(actor, info)
  actors.set(info.id, actor)
  // The supervisor (a root without a campaign) is selected until someone picks another actor.
  if (!selectedId && info.parentId === null && !info.campaignId) selectedId = info.id
  if (info.id === selectedId) detailDirty = true
  addStatusOption(actor)
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
      addStatusOption(actor)
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

/**
 * The status filter: the sessions' live statuses and how sessions ended are in the page; the
 * states of other actors (the supervisor's) are added as they appear. A session passes through
 * `timedOut` and `failed` in an instant on its way to cleaning, so people find those sessions by
 * the reason they ended, not by a state they are almost never in.
 */
const statusOptions = new Set(Object.keys(STATUS_LABELS))
const TIMEOUT_REASONS = new Set(['init_timeout', 'scan_timeout', 'auth_timeout'])
const FAILURE_REASONS = new Set(['engine_failed', 'logged_out', 'unresponsive', 'node_lost'])

function addStatusOption(actor) {
  const state = topState(actor.state)
  if (actor.campaignId || !state || statusOptions.has(state)) return
  statusOptions.add(state)
  $('status-other').append(h('option', { value: state }, state))
  // (Options are only ever added: a filter someone chose never disappears under them.)
}

function matchesStatus(actor, filter) {
  if (!filter) return true
  if (!filter.startsWith('ended')) return topState(actor.state) === filter
  if (!actor.campaignId) return false
  const reason = actor.context?.reason ?? null
  const ended = actor.ended || topState(actor.state) === 'cleaned'
  switch (filter) {
    case 'ended:timeout':
      return TIMEOUT_REASONS.has(reason)
    case 'ended:failure':
      return FAILURE_REASONS.has(reason)
    case 'ended:cleanup':
      return ended && !TIMEOUT_REASONS.has(reason) && !FAILURE_REASONS.has(reason)
    default:
      return ended
  }
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
    if (!matchesStatus(actor, status)) continue
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
        h(
          'td',
          { class: 'mono' },
          step.event,
          step.about ? h('span', { class: 'about' }, ` ${step.about}`) : null
        ),
        h(
          'td',
          { class: 'mono' },
          step.from === step.to ? step.to : `${step.from ?? '∅'} → ${step.to}`
        )
      )
    )
  }
  if (rows.length === 0) {
    rows.push(
      h(
        'tr',
        {},
        h('td', { colspan: 3, class: 'empty' }, 'No events yet; they appear as they happen.')
      )
    )
  }
  $('log').replaceChildren(...rows)
}

let mermaidModule = null
let diagramCounter = 0
/** Diagrams Mermaid is drawing now. */
let drawing = 0

async function loadMermaid() {
  if (!mermaidModule) {
    mermaidModule = import('/assets/vendor/mermaid/mermaid.esm.min.mjs').then((module) => {
      const mermaid = module.default
      mermaid.initialize({
        startOnLoad: false,
        // A diagram that cannot be drawn says so in the pane; Mermaid must not add its own
        // "Syntax error" drawing to the page.
        suppressErrorRendering: true,
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
      diagramCounter += 1
      const renderId = `statechart-${diagramCounter}`
      // Marked while Mermaid draws (tests wait for it to clear; so may a person's tools).
      drawing += 1
      container.dataset.drawing = 'true'
      try {
        const mermaid = await loadMermaid()
        const { svg } = await mermaid.render(renderId, machine.mermaid)
        machine.svg = svg
      } catch (error) {
        // Whatever Mermaid left behind while it tried (its scratch element) goes too.
        for (const id of [renderId, `d${renderId}`, `i${renderId}`]) {
          document.getElementById(id)?.remove()
        }
        container.replaceChildren(
          h('p', { class: 'banner bad' }, `The statechart could not be drawn: ${error.message}`)
        )
        return
      } finally {
        drawing -= 1
        if (drawing === 0) delete container.dataset.drawing
      }
      // Another actor may have been selected while Mermaid was drawing.
      const current = actors.get(selectedId)
      if (!current || current.machineId !== actor.machineId) return
    }
    container.innerHTML = machine.svg
    container.dataset.machine = actor.machineId
    highlight(container, actors.get(selectedId)?.state ?? actor.state)
    openDiagramView()
    return
  }
  highlight(container, actors.get(selectedId)?.state ?? actor.state)
}

// ---- Zoom and pan ------------------------------------------------------------------------------

/** The drawn diagram's own size (its viewBox), and the zoom it is shown at. */
const view = { width: 0, height: 0, zoom: 1 }

function diagramSvg() {
  return $('diagram').querySelector('svg')
}

/** Sizes a freshly drawn diagram to be readable, and brings the current state into view. */
function openDiagramView() {
  const svg = diagramSvg()
  if (!svg) return
  const box = svg.viewBox.baseVal
  view.width = box && box.width ? box.width : svg.getBoundingClientRect().width
  view.height = box && box.height ? box.height : svg.getBoundingClientRect().height
  // Mermaid sizes the drawing to the pane (width 100%, max-width): we size it ourselves.
  svg.removeAttribute('style')
  view.zoom = 1
  $('diagram').scrollTo(0, 0)
  setZoom(Math.min(1, Math.max(READABLE_ZOOM, fitZoom())))
  showCurrentState()
}

function fitZoom() {
  const container = $('diagram')
  if (!view.width || !view.height) return 1
  return Math.min(
    (container.clientWidth - 16) / view.width,
    (container.clientHeight - 16) / view.height
  )
}

/** Zooms, keeping the diagram point under `anchor` (pane coordinates) where it is. */
function setZoom(zoom, anchor) {
  const svg = diagramSvg()
  if (!svg || !view.width) return
  const container = $('diagram')
  const next = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, zoom))
  const at = anchor ?? { x: container.clientWidth / 2, y: container.clientHeight / 2 }
  const pointX = (container.scrollLeft + at.x) / view.zoom
  const pointY = (container.scrollTop + at.y) / view.zoom
  view.zoom = next
  svg.setAttribute('width', String(Math.round(view.width * next)))
  svg.setAttribute('height', String(Math.round(view.height * next)))
  container.scrollLeft = pointX * next - at.x
  container.scrollTop = pointY * next - at.y
  $('zoom-level').textContent = `${Math.round(next * 100)}%`
  container.dataset.zoom = next.toFixed(3)
}

/** Scrolls the pane so that the highlighted state is in its middle. */
function showCurrentState() {
  const container = $('diagram')
  const current = [...container.querySelectorAll('.is-current')].pop()
  if (!current) return
  const node = current.getBoundingClientRect()
  const pane = container.getBoundingClientRect()
  container.scrollLeft += node.left + node.width / 2 - (pane.left + pane.width / 2)
  container.scrollTop += node.top + node.height / 2 - (pane.top + pane.height / 2)
}

function wireDiagramView() {
  const container = $('diagram')
  $('zoom-in').addEventListener('click', () => setZoom(view.zoom * 1.25))
  $('zoom-out').addEventListener('click', () => setZoom(view.zoom / 1.25))
  $('zoom-fit').addEventListener('click', () => setZoom(fitZoom()))
  $('zoom-current').addEventListener('click', () => {
    if (view.zoom < READABLE_ZOOM) setZoom(READABLE_ZOOM)
    showCurrentState()
  })
  container.addEventListener('keydown', (event) => {
    const zooms = { '+': 1.25, '=': 1.25, '-': 0.8, _: 0.8 }
    if (event.key in zooms) {
      event.preventDefault()
      setZoom(view.zoom * zooms[event.key])
    } else if (event.key === '0') {
      event.preventDefault()
      setZoom(fitZoom())
    }
  })
  // Ctrl (or ⌘) and the wheel, or a pinch on a touchpad, zoom around the pointer.
  container.addEventListener(
    'wheel',
    (event) => {
      if (!event.ctrlKey && !event.metaKey) return
      event.preventDefault()
      const pane = container.getBoundingClientRect()
      const anchor = { x: event.clientX - pane.left, y: event.clientY - pane.top }
      setZoom(view.zoom * Math.exp(-event.deltaY * 0.002), anchor)
    },
    { passive: false }
  )
  // Dragging moves the diagram (mouse, pen or a finger).
  let drag = null
  container.addEventListener('pointerdown', (event) => {
    if (event.button !== 0 || !diagramSvg()) return
    drag = {
      id: event.pointerId,
      x: event.clientX,
      y: event.clientY,
      left: container.scrollLeft,
      top: container.scrollTop,
    }
    container.setPointerCapture(event.pointerId)
    container.classList.add('panning')
  })
  container.addEventListener('pointermove', (event) => {
    if (!drag || event.pointerId !== drag.id) return
    container.scrollLeft = drag.left - (event.clientX - drag.x)
    container.scrollTop = drag.top - (event.clientY - drag.y)
  })
  const endDrag = (event) => {
    if (!drag || event.pointerId !== drag.id) return
    drag = null
    container.classList.remove('panning')
  }
  container.addEventListener('pointerup', endDrag)
  container.addEventListener('pointercancel', endDrag)
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
