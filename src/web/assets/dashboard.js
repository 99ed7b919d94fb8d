/**
 * The dashboard: link a campaign's WhatsApp and follow its sessions live.
 *
 * Linking is the seed's flow done right: check the connection, clean up only a session that is
 * really stuck (a live, unlinked session whose deadline has already passed), request the QR
 * (the service answers at once and joins a session already in progress), and follow the
 * campaign over `/ws/campaigns`, which replays the current QR to a late subscriber.
 */
import {
  clockTime,
  connectSocket,
  createApi,
  forgetToken,
  h,
  readClaims,
  reasonText,
  saveToken,
  socketUrl,
  statusLabel,
  takeToken,
} from './client.js'

const $ = (id) => document.getElementById(id)
const simulator = document.body.dataset.simulator === 'true'
const inspectorOn = document.body.dataset.inspect === 'true'

/** How many campaigns of the list are followed live; the rest are refreshed by polling. */
const MAX_LIVE_CAMPAIGNS = 50

let api
let live
/** The difference between the server's clock and ours, from each message's `at`. */
let serverSkewMs = 0
const campaigns = new Map()
const subscribed = new Set()

/** The campaign being linked in the panel above the list. */
const link = {
  campaignId: null,
  sessionId: null,
  status: 'idle',
  expiresAt: null,
  phaseStartedAt: null,
  /**
   * 'linked' | 'timedOut' | 'failed' | 'ended' | 'unlinked' | null: once set, later cleanup statuses
   * do not hide it.
   */
  outcome: null,
  /** The session holds an engine (its last status said hasActiveSession). */
  active: false,
  /** The campaign may keep a saved login: its session reached ready, and nobody logged it out since. */
  mayBeLinked: false,
  /** Messages that arrive while the request is in flight; replayed once its sessionId is known. */
  held: null,
  /** Linking with a phone number: the code shown now (null with a QR). */
  pairingCode: null,
}

async function start() {
  const token = takeToken()
  if (!token) return showSignIn()
  api = createApi(token)
  // One call tells whether the service takes the token, before the page opens its WebSocket
  // (a refused token must not open, retry and reopen a socket) or says who is signed in.
  let list
  try {
    list = await api.get('/api/campaigns')
  } catch (error) {
    if (error.status === 401) return handleApiError(error)
    list = null
    $('campaigns-error').textContent = error.message
    $('campaigns-error').hidden = false
  }
  const claims = readClaims(token)
  $('who').textContent = `${claims.sub}${claims.admin ? ' (admin)' : ''}`
  $('sign-out').hidden = false
  $('sign-out').addEventListener('click', () => {
    forgetToken()
    location.reload()
  })
  if (inspectorOn && claims.admin) {
    // The fragment carries the token to the other page without sending it to the server.
    const inspector = $('inspector-link')
    inspector.hidden = false
    inspector.href = `/inspect#token=${encodeURIComponent(token)}`
  }
  $('link').hidden = false
  $('campaigns').hidden = false
  $('link-phone').hidden = !simulator
  wireLinkPanel()
  live = connectSocket(socketUrl('/ws/campaigns', token), {
    onOpen(send) {
      for (const campaignId of subscribed) send({ type: 'subscribe', campaignId })
      $('live-state').textContent = 'Live updates on.'
    },
    onMessage: handleMessage,
    onState(state, event) {
      if (state === 'closed') {
        $('live-state').textContent =
          event && event.code === 1008
            ? 'Live updates refused by the service (token?).'
            : 'Live updates interrupted, reconnecting…'
      }
    },
  })
  if (list) showCampaigns(list)
  else refreshCampaigns()
  setInterval(refreshCampaigns, 15_000)
  setInterval(renderCountdown, 250)
  const fromQuery = new URLSearchParams(location.search).get('campaign')
  if (fromQuery) $('campaign-id').value = fromQuery
}

function showSignIn(message) {
  $('sign-in').hidden = false
  $('link').hidden = true
  $('campaigns').hidden = true
  $('who').textContent = ''
  $('sign-out').hidden = true
  $('inspector-link').hidden = true
  live?.close()
  live = null
  if (message) {
    $('sign-in-error').textContent = message
    $('sign-in-error').hidden = false
  }
  if (signInWired) return $('token-input').focus()
  signInWired = true
  $('sign-in-form').addEventListener('submit', (event) => {
    event.preventDefault()
    saveToken($('token-input').value.trim())
    location.reload()
  })
  $('token-input').focus()
}

let signInWired = false

function handleApiError(error, where) {
  if (error.status === 401) {
    forgetToken()
    showSignIn('The service refused the token (expired or not valid here). Paste a new one.')
    return
  }
  if (!where) return
  where.textContent = error.message
  where.hidden = false
}

// ---- Linking ---------------------------------------------------------------------------------

function wireLinkPanel() {
  $('link-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const campaignId = $('campaign-id').value.trim()
    if (!$('campaign-id').checkValidity()) return $('campaign-id').reportValidity()
    linkCampaign(campaignId, { force: false })
  })
  $('restart-button').addEventListener('click', () => {
    if (link.campaignId) linkCampaign(link.campaignId, { force: true })
  })
  $('retry-button').addEventListener('click', () => {
    if (link.campaignId) linkCampaign(link.campaignId, { force: false })
  })
  $('unlink-button').addEventListener('click', openUnlinkDialog)
  $('unlink-dialog').addEventListener('close', () => {
    const dialog = $('unlink-dialog')
    const campaignId = dialog.dataset.campaign
    if (dialog.returnValue === 'unlink' && campaignId === link.campaignId) unlink(campaignId)
    else if (!$('unlink-button').hidden) $('unlink-button').focus()
  })
  for (const button of document.querySelectorAll('#link-phone [data-phone]')) {
    button.addEventListener('click', () => playPhone(link.campaignId, button.dataset.phone))
  }
  $('proxy-form').addEventListener('submit', (event) => {
    event.preventDefault()
    if (link.campaignId) saveProxy(link.campaignId, $('proxy-url').value.trim())
  })
  $('proxy-remove').addEventListener('click', () => {
    if (link.campaignId) saveProxy(link.campaignId, null)
  })
  $('pairing-toggle').addEventListener('click', () => {
    $('pairing-toggle').hidden = true
    $('pairing-form').hidden = false
    $('phone-number').focus()
  })
  $('pairing-form').addEventListener('submit', (event) => {
    event.preventDefault()
    if (!$('phone-number').checkValidity()) return $('phone-number').reportValidity()
    if (link.campaignId) {
      linkCampaign(link.campaignId, { force: false, phoneNumber: $('phone-number').value.trim() })
    }
  })
}

/** Whether a live session is stuck: not linked, and its phase deadline already long gone. */
function isStuck(connection) {
  if (!connection.hasActiveSession || connection.isConnected) return false
  if (!connection.expiresAt) return false
  return Date.parse(connection.expiresAt) < serverNow() - 5_000
}

/** `phoneNumber`: link with a pairing code for that number instead of a QR. */
async function linkCampaign(campaignId, { force, phoneNumber = null }) {
  Object.assign(link, {
    campaignId,
    sessionId: null,
    status: 'idle',
    expiresAt: null,
    phaseStartedAt: null,
    outcome: null,
    active: false,
    mayBeLinked: false,
    wasLinked: false,
    held: [],
    pairingCode: null,
    pairing: phoneNumber !== null,
  })
  $('pairing-form').hidden = true
  $('unlink-error').hidden = true
  renderUnlinkButton()
  $('link-panel').hidden = false
  $('link-campaign').textContent = campaignId
  setBusy(true)
  showQr(null, 'Requesting a session…')
  renderLink('Checking the campaign’s connection…')
  try {
    const base = `/api/campaigns/${encodeURIComponent(campaignId)}`
    if (!force) {
      const connection = await api.get(`${base}/connection`)
      if (isStuck(connection)) {
        renderLink('Cleaning up a stuck session…')
        await api.post(`${base}/cleanup-session`)
      }
    }
    renderLink(
      force
        ? 'Starting over with a new session…'
        : phoneNumber
          ? 'Requesting a pairing code…'
          : 'Requesting the QR code…'
    )
    const answer = phoneNumber
      ? await api.post(`${base}/pairing-code`, { phoneNumber })
      : await api.post(`${base}/qr-code`, force ? { force: true } : {})
    link.sessionId = answer.sessionId
    link.expiresAt = answer.expiresAt ? Date.parse(answer.expiresAt) : null
    follow(campaignId)
    // A session started or joined is active (the service's answer to qr-code always is).
    applyStatus(answer.status, null, true)
    if (answer.qrCode) showQr(answer.qrCode)
    if (answer.pairingCode) showPairingCode(answer.pairingCode.code)
    renderCountdown()
    renderLink(
      answer.status === 'ready'
        ? null
        : answer.reused
          ? 'Joined the session already in progress.'
          : phoneNumber
            ? 'Session started; waiting for the pairing code…'
            : 'Session started; waiting for the QR code…'
    )
    // The row shows the session at once, and its whole history (its first step happened before
    // the page subscribed) once the service has told it.
    upsertCampaign({ ...answer, hasActiveSession: true, history: [] })
    syncCampaign(campaignId)
    loadProxy(campaignId)
    const held = link.held ?? []
    link.held = null
    for (const message of held) handleLinkMessage(message)
  } catch (error) {
    link.held = null
    link.outcome = 'failed'
    renderOutcome({
      title: phoneNumber ? 'Could not request a pairing code' : 'Could not request a QR code',
      text: error.message,
      retry: true,
    })
    if (error.status === 401) handleApiError(error, $('link-message'))
  } finally {
    setBusy(false)
  }
}

function setBusy(busy) {
  $('link-button').disabled = busy
  $('restart-button').disabled = busy
}

/** A campaign message from the socket that concerns the panel's session. */
function handleLinkMessage(message) {
  if (message.campaignId !== link.campaignId) return
  if (link.held) {
    link.held.push(message)
    return
  }
  if (link.sessionId && message.sessionId && message.sessionId !== link.sessionId) {
    // An older session's last words are not news; a new live session is: the service restarted
    // the campaign after a crash, or someone started it over. The panel follows the campaign.
    if (!startsNewSession(message)) return
    followNewSession(message.sessionId)
  }
  if (!link.sessionId) link.sessionId = message.sessionId
  switch (message.type) {
    case 'subscribed':
    case 'status':
      applyStatus(message.status, message.reason, message.hasActiveSession)
      return
    case 'qr_code':
      link.expiresAt = message.expiresAt ? Date.parse(message.expiresAt) : link.expiresAt
      showQr(message.qrCode)
      if (link.status !== 'awaitingScan') applyStatus('awaitingScan', null, true)
      renderCountdown()
      renderLink(
        message.attempt > 1
          ? `A new QR code (number ${message.attempt}); the deadline stays the same.`
          : 'Scan the QR code with the phone.'
      )
      return
    case 'pairing_code': {
      const renewed = link.pairingCode !== null && link.pairingCode !== message.code
      link.pairing = true
      link.expiresAt = message.expiresAt ? Date.parse(message.expiresAt) : link.expiresAt
      showPairingCode(message.code)
      if (link.status !== 'awaitingScan') applyStatus('awaitingScan', null, true)
      renderCountdown()
      renderLink(
        renewed
          ? 'WhatsApp renewed the code; type the new one. The deadline stays the same.'
          : 'Type this code on the phone.'
      )
      return
    }
    case 'ready':
      applyStatus('ready', null, true)
      return
    case 'error': {
      link.outcome = message.code && message.code.endsWith('_timeout') ? 'timedOut' : 'failed'
      const outcome = outcomeFor(link.outcome, message.code, message.message)
      outcome.detail = message.detail ?? null
      if (message.code === 'logged_out') {
        outcome.title = 'Logged out from the phone'
        link.mayBeLinked = false
        renderUnlinkButton()
      } else if (link.wasLinked) outcome.title = 'Connection lost'
      renderOutcome(outcome)
      renderLink(null)
      return
    }
  }
}

function startsNewSession(message) {
  if (message.type === 'qr_code' || message.type === 'pairing_code' || message.type === 'ready') {
    return true
  }
  return (message.type === 'status' || message.type === 'subscribed') && message.hasActiveSession
}

function followNewSession(sessionId) {
  Object.assign(link, {
    sessionId,
    status: 'idle',
    expiresAt: null,
    phaseStartedAt: null,
    outcome: null,
  })
  $('outcome').hidden = true
  $('outcome-detail').hidden = true
  renderLink(
    link.wasLinked
      ? 'The service restarted the session; WhatsApp reconnects with the saved login.'
      : 'A new session of this campaign started; following it.'
  )
}

/** After a timeout or a failure the session is torn down; the status people need is the outcome. */
function keepsOutcome(previous, next) {
  return (
    (previous === 'timedOut' || previous === 'failed') &&
    (next === 'cleaning' || next === 'cleaned')
  )
}

/** `active`: the status holds an engine (the service says so with each status: hasActiveSession). */
function applyStatus(status, reason, active) {
  if (keepsOutcome(link.status, status)) return
  link.status = status
  link.active = active
  if (status === 'ready') link.mayBeLinked = true
  if (reason === 'logged_out' || reason === 'unlinked') link.mayBeLinked = false
  renderUnlinkButton()
  const badge = $('link-status')
  badge.dataset.status = status
  badge.textContent =
    link.pairing && status === 'awaitingScan' ? 'Waiting for the code' : statusLabel(status)
  // Also once linked: starting over restarts the session (WhatsApp reconnects with its saved
  // login; to link another phone, unlink first).
  $('restart-button').hidden = !active
  if (status === 'ready') {
    link.outcome = 'linked'
    link.wasLinked = true
    showQr(null, 'Linked ✓')
    renderOutcome(outcomeFor('linked'))
    renderLink(null)
  } else if (status === 'authenticating') {
    showQr(
      null,
      link.pairing
        ? 'Code accepted. WhatsApp is linking the phone…'
        : 'Scanned. WhatsApp is linking the phone…'
    )
    refreshDeadline()
    renderLink(
      link.pairing
        ? 'The phone took the code; WhatsApp is syncing.'
        : 'The phone scanned the code; WhatsApp is syncing.'
    )
  } else if (status === 'initializing') {
    if (!$('qr-image')) showQr(null, 'WhatsApp is starting…')
    renderLink(`WhatsApp is starting; the ${link.pairing ? 'pairing code' : 'QR code'} comes next.`)
  } else if (
    (status === 'timedOut' || status === 'failed') &&
    (!link.outcome || link.outcome === 'linked')
  ) {
    link.outcome = status
    const outcome = outcomeFor(status, reason)
    if (reason === 'logged_out') outcome.title = 'Logged out from the phone'
    else if (link.wasLinked) outcome.title = 'Connection lost'
    renderOutcome(outcome)
    renderLink(null)
  } else if (status === 'cleaned' && reason === 'unlinked') {
    // Unlinked from this page or elsewhere (another tab, the API).
    showUnlinked()
  } else if (status === 'cleaned' && !link.outcome) {
    link.outcome = 'ended'
    renderOutcome(outcomeFor('ended', reason))
  }
  if (!active || status === 'ready') {
    const box = $('qr-box')
    if (box.querySelector('img, .pairing-code') && status !== 'ready') {
      box.classList.add('expired')
    }
  }
  renderPhoneButtons()
  renderPairingToggle()
}

/** “Link with phone number instead”: offered while a session waits for its QR to be scanned. */
function renderPairingToggle() {
  const offered =
    Boolean(link.campaignId) && !link.pairing && !link.outcome && link.status !== 'ready'
  $('pairing-toggle').hidden = !offered || !$('pairing-form').hidden
  if (!offered) $('pairing-form').hidden = true
}

/** A new phase has its own deadline, which status messages do not carry: ask for it. */
async function refreshDeadline() {
  const { campaignId, sessionId, status } = link
  link.expiresAt = null
  try {
    const connection = await api.get(`/api/campaigns/${encodeURIComponent(campaignId)}/connection`)
    if (link.sessionId !== sessionId || link.status !== status || link.outcome) return
    link.expiresAt = connection.expiresAt ? Date.parse(connection.expiresAt) : null
    link.phaseStartedAt = Date.now()
  } catch {
    // The countdown stays hidden; the status still follows live.
  }
}

function outcomeFor(kind, reason, message) {
  switch (kind) {
    case 'linked':
      return { title: 'Linked', text: 'WhatsApp is connected for this campaign.', retry: false }
    case 'timedOut':
      return {
        title: 'Timed out',
        text: message || reasonText(reason) || 'A deadline passed.',
        retry: true,
      }
    case 'failed':
      return {
        title: 'Linking failed',
        text: message || reasonText(reason) || 'The session failed.',
        retry: true,
      }
    case 'unlinked':
      return {
        title: 'Unlinked',
        text: 'WhatsApp is unlinked from this campaign and its login is deleted. “Link again” shows a new QR code to scan.',
        retry: true,
        retryLabel: 'Link again',
      }
    default:
      return { title: 'Session ended', text: reasonText(reason), retry: true }
  }
}

function renderOutcome({ title, text, retry, retryLabel = 'Try again', detail = null }) {
  const box = $('outcome')
  box.hidden = false
  box.dataset.kind = link.outcome
  $('outcome-title').textContent = title
  $('outcome-text').textContent = text
  $('outcome-detail').textContent = detail ?? ''
  $('outcome-detail').hidden = !detail
  $('retry-button').hidden = !retry
  $('retry-button').textContent = retryLabel
  $('scan-steps').hidden = true
  $('pairing-steps').hidden = true
  renderPairingToggle()
  link.expiresAt = link.outcome === 'linked' ? null : link.expiresAt
  // The box says how it ended; an expired QR stays, dimmed, where it was.
  if (!$('qr-image')) showQr(null, QR_BOX_OUTCOMES[link.outcome] ?? title)
  renderCountdown()
}

const QR_BOX_OUTCOMES = {
  linked: 'Linked ✓',
  timedOut: 'Timed out: no QR code to scan.',
  failed: 'Linking failed: no QR code to scan.',
  ended: 'The session ended.',
  unlinked: 'Unlinked: no phone is linked.',
}

function renderLink(message) {
  if (!link.outcome) {
    $('outcome').hidden = true
    $('scan-steps').hidden = link.pairing
    $('pairing-steps').hidden = !link.pairing
  }
  if (message !== undefined) $('link-message').textContent = message ?? ''
}

function showQr(dataUrl, placeholder) {
  const box = $('qr-box')
  box.classList.remove('expired')
  box.replaceChildren()
  if (dataUrl) {
    link.phaseStartedAt = Date.now()
    box.append(
      h('img', {
        id: 'qr-image',
        src: dataUrl,
        alt: `QR code to link campaign ${link.campaignId} with WhatsApp`,
      })
    )
  } else {
    box.append(h('span', { id: 'qr-placeholder' }, placeholder ?? ''))
  }
  renderPhoneButtons()
}

/** The pairing code, large, where the QR would be (4 + 4 characters, as the phone shows it). */
function showPairingCode(code) {
  link.pairingCode = code
  const box = $('qr-box')
  box.classList.remove('expired')
  box.replaceChildren(
    h(
      'span',
      {
        id: 'pairing-code',
        class: 'pairing-code',
        'data-code': code,
        'aria-label': `Pairing code: ${code.split('').join(' ')}`,
      },
      `${code.slice(0, 4)}-${code.slice(4)}`
    )
  )
  link.phaseStartedAt ??= Date.now()
  renderPhoneButtons()
}

function renderPhoneButtons() {
  if (!simulator) return
  const waiting = link.status === 'awaitingScan'
  const hasQr = Boolean($('qr-image')) && waiting
  const hasCode = Boolean($('pairing-code')) && waiting
  const live = ['initializing', 'awaitingScan', 'authenticating', 'ready'].includes(link.status)
  for (const button of document.querySelectorAll('#link-phone [data-phone]')) {
    const { phone } = button.dataset
    button.disabled = phone === 'scan' ? !hasQr : phone === 'pairing-code' ? !hasCode : !live
  }
}

function serverNow() {
  return Date.now() + serverSkewMs
}

function renderCountdown() {
  const counting = link.expiresAt && !link.outcome && link.status !== 'ready'
  const bar = $('countdown-bar')
  if (link.outcome === 'timedOut' && link.expiresAt) {
    $('countdown').textContent = '0:00'
    $('countdown').dataset.remainingMs = '0'
    $('countdown-text').textContent = 'expired'
    bar.style.width = '0'
    return
  }
  if (!counting) {
    $('countdown').textContent = ''
    $('countdown-text').textContent = ''
    bar.style.width = '0'
    return
  }
  const left = Math.max(0, link.expiresAt - serverNow())
  const seconds = Math.ceil(left / 1000)
  $('countdown').textContent =
    `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`
  $('countdown').dataset.remainingMs = String(left)
  const phase =
    link.status === 'initializing'
      ? 'for WhatsApp to start'
      : link.status === 'authenticating'
        ? 'to finish linking'
        : link.pairing
          ? 'to type the code'
          : 'to scan'
  $('countdown-text').textContent =
    left > 0 ? `left ${phase}` : 'Time is up; waiting for the service to confirm…'
  const total = Math.max(1, link.expiresAt - (link.phaseStartedAt ?? link.expiresAt - 30_000))
  bar.style.width = `${Math.min(100, (left / total) * 100)}%`
  if (left === 0) $('qr-box').classList.add('expired')
}

// ---- The campaign's proxy -------------------------------------------------------------------

async function loadProxy(campaignId) {
  try {
    const settings = await api.get(`/api/campaigns/${encodeURIComponent(campaignId)}/settings`)
    if (campaignId === link.campaignId) showProxy(settings.proxy)
  } catch {
    $('proxy-form').hidden = true
  }
}

/** `url` null removes the proxy. The field is emptied: a password never stays on the page. */
async function saveProxy(campaignId, url) {
  try {
    const settings = await api.put(`/api/campaigns/${encodeURIComponent(campaignId)}/settings`, {
      proxy: url,
    })
    $('proxy-url').value = ''
    showProxy(settings.proxy, 'Saved: the next session of the campaign goes through it.')
  } catch (error) {
    $('proxy-current').textContent = `The proxy was not saved: ${error.message}`
  }
}

/** Only the address is ever shown (the service never answers the credentials). */
function showProxy(proxy, note = '') {
  $('proxy-form').hidden = false
  $('proxy-remove').hidden = !proxy
  const current = proxy
    ? `Through ${proxy.server}${proxy.hasCredentials ? ' (with credentials)' : ''}.`
    : 'No proxy of its own (the service default applies, if any).'
  $('proxy-current').textContent = note ? `${current} ${note}` : current
}

// ---- Unlinking -------------------------------------------------------------------------------

/**
 * Offered while the campaign may keep a login: its session reached ready (and nobody logged it out
 * since), or holds an engine that may run on a saved login (starting, or scanned and syncing). Not
 * while a QR waits for its first scan: nothing is linked, and “Start over” or “Clean up” end that.
 */
function renderUnlinkButton() {
  const mayRunOnALogin = link.active && link.status !== 'awaitingScan'
  $('unlink-button').hidden =
    !link.campaignId || link.outcome === 'unlinked' || !(link.mayBeLinked || mayRunOnALogin)
}

function openUnlinkDialog() {
  if (!link.campaignId) return
  const dialog = $('unlink-dialog')
  dialog.dataset.campaign = link.campaignId
  dialog.returnValue = ''
  $('unlink-campaign').textContent = link.campaignId
  // Only a live session can log the device out; a stopped one leaves it listed on the phone.
  $('unlink-logout').textContent = link.active
    ? 'WhatsApp logs this device out: the phone no longer lists it under Linked devices.'
    : 'No session is running, so nothing logs the device out now: remove it on the phone too (Settings → Linked devices).'
  dialog.showModal()
}

async function unlink(campaignId) {
  const button = $('unlink-button')
  button.disabled = true
  $('link-button').disabled = true
  $('restart-button').disabled = true
  $('unlink-error').hidden = true
  renderLink('Unlinking WhatsApp…')
  try {
    const answer = await api.post(`/api/campaigns/${encodeURIComponent(campaignId)}/logout`)
    syncCampaign(campaignId)
    if (link.campaignId !== campaignId) return
    if (answer.loginDeleted) {
      showUnlinked()
      $('retry-button').focus()
    } else {
      renderLink(answer.message)
    }
  } catch (error) {
    if (error.status === 401) return handleApiError(error)
    if (link.campaignId !== campaignId) return
    renderLink(null)
    $('unlink-error').textContent = `Could not unlink WhatsApp: ${error.message}`
    $('unlink-error').hidden = false
  } finally {
    button.disabled = false
    if (link.campaignId === campaignId) setBusy(false)
  }
}

function showUnlinked() {
  link.mayBeLinked = false
  if (link.outcome === 'unlinked') return
  link.outcome = 'unlinked'
  renderUnlinkButton()
  renderOutcome(outcomeFor('unlinked'))
  renderLink(null)
}

async function playPhone(campaignId, action) {
  if (!campaignId) return
  try {
    await api.post(
      `/api/simulator/campaigns/${encodeURIComponent(campaignId)}/${action}`,
      action === 'pairing-code' ? { code: link.pairingCode } : undefined
    )
  } catch (error) {
    $('link-message').textContent = `The simulator refused “${action}”: ${error.message}`
  }
}

// ---- The campaign list -----------------------------------------------------------------------

function follow(campaignId) {
  if (subscribed.has(campaignId)) return
  if (subscribed.size >= MAX_LIVE_CAMPAIGNS && campaignId !== link.campaignId) return
  subscribed.add(campaignId)
  live.send({ type: 'subscribe', campaignId })
}

/** The last `subscribed` of each campaign: what follows it at once is its replay. */
const lastSubscribed = new Map()

/**
 * A subscription replays the current state (`subscribed`, then the current QR or the outcome),
 * stamped with the time it was sent, not when it happened: it is not activity.
 */
function isReplay(message) {
  if (message.type === 'subscribed') {
    lastSubscribed.set(message.campaignId, { seq: message.seq, at: message.at })
    return true
  }
  const subscribedBy = lastSubscribed.get(message.campaignId)
  return Boolean(
    subscribedBy && message.seq === subscribedBy.seq + 1 && message.at === subscribedBy.at
  )
}

function handleMessage(message) {
  if (typeof message.at === 'string' || typeof message.at === 'number') {
    const at = typeof message.at === 'number' ? message.at : Date.parse(message.at)
    if (!Number.isNaN(at)) serverSkewMs = serverSkewMs * 0.8 + (at - Date.now()) * 0.2
  }
  if (!message.campaignId) return
  const replayed = isReplay(message)
  handleLinkMessage(message)
  const known = campaigns.get(message.campaignId)
  if (!known) return
  if (message.type === 'subscribed') {
    // The service's current state: if the row missed a step, it takes the service's account.
    const sameSession = message.sessionId === known.sessionId
    if (
      !sameSession ||
      (message.status !== known.status && !keepsOutcome(known.status, message.status))
    ) {
      syncCampaign(message.campaignId)
    }
    return
  }
  if (message.sessionId && known.sessionId && message.sessionId !== known.sessionId) {
    // Another session than the row knows: an older one's last words are dropped; for a new one
    // the row takes the service's account (its history is the new session's).
    if (startsNewSession(message)) syncCampaign(message.campaignId)
    return
  }
  if (replayed) return
  const update = { ...known }
  if (message.sessionId) update.sessionId = message.sessionId
  if (message.type === 'error') {
    update.reason = message.code
    update.detail = message.detail ?? null
  }
  if (message.type === 'status') {
    const entry = { status: message.status, at: message.at }
    if (message.reason) entry.reason = message.reason
    update.history = [...(known.history ?? []), entry]
    if (!keepsOutcome(known.status, message.status)) {
      update.status = message.status
      update.reason = message.reason ?? null
      update.isConnected = message.status === 'ready'
    }
    // Ready is seen alive; later probes show in the service's account (GET …/connection).
    if (message.status === 'ready') update.lastSeenAlive = new Date(message.at).toISOString()
    update.hasActiveSession = message.hasActiveSession
    if (message.node !== undefined) update.node = message.node
  }
  update.lastActivity = message.at
  upsertCampaign(update)
}

/** Takes the service's account of a campaign (GET …/connection) for its row. */
async function syncCampaign(campaignId) {
  try {
    upsertCampaign(await api.get(`/api/campaigns/${encodeURIComponent(campaignId)}/connection`))
  } catch (error) {
    handleApiError(error, $('campaigns-error'))
  }
}

async function refreshCampaigns() {
  try {
    // The list comes in pages: follow nextCursor to the end.
    let cursor = null
    do {
      const query = cursor ? `?limit=1000&cursor=${encodeURIComponent(cursor)}` : '?limit=1000'
      const list = await api.get(`/api/campaigns${query}`)
      showCampaigns(list)
      cursor = list.nextCursor ?? null
    } while (cursor)
  } catch (error) {
    handleApiError(error, $('campaigns-error'))
  }
}

function showCampaigns(list) {
  const items = Array.isArray(list) ? list : (list.campaigns ?? [])
  for (const campaign of items) {
    upsertCampaign(campaign)
    follow(campaign.campaignId)
  }
  $('campaigns-error').hidden = true
}

function upsertCampaign(view) {
  const previous = campaigns.get(view.campaignId) ?? {}
  const merged = { ...previous, ...view }
  if (!view.history) merged.history = previous.history ?? []
  // An answer that left the service before the live messages the row already has says less:
  // the row keeps what it knows of the same session.
  const sameSession = previous.sessionId && previous.sessionId === view.sessionId
  if (sameSession && view.history && view.history.length < (previous.history ?? []).length) {
    const kept = ['history', 'status', 'reason', 'detail', 'isConnected', 'hasActiveSession']
    for (const field of [...kept, 'lastActivity']) merged[field] = previous[field]
  }
  campaigns.set(view.campaignId, merged)
  renderRow(merged)
}

const rows = new Map()

function renderRow(campaign) {
  let row = rows.get(campaign.campaignId)
  if (!row) {
    row = createRow(campaign.campaignId)
    rows.set(campaign.campaignId, row)
    const sorted = [...rows.keys()].sort()
    const next = sorted[sorted.indexOf(campaign.campaignId) + 1]
    $('campaign-rows').insertBefore(row.element, next ? rows.get(next).element : null)
    $('no-campaigns').hidden = true
  }
  row.badge.dataset.status = campaign.status
  row.badge.textContent = statusLabel(campaign.status)
  row.reason.textContent = campaign.reason ? reasonText(campaign.reason) : ''
  const detail = campaign.hasActiveSession ? null : campaign.detail
  row.detail.textContent = detail ?? ''
  row.detail.hidden = !detail
  row.activity.textContent = clockTime(campaign.lastActivity)
  if (campaign.lastSeenAlive) {
    const seen = h(
      'div',
      { class: 'hint seen-alive' },
      `last seen alive ${clockTime(campaign.lastSeenAlive)}`
    )
    seen.title = 'When WhatsApp last answered that it is connected'
    row.activity.append(seen)
  }
  row.session.textContent = campaign.sessionId ? campaign.sessionId.slice(0, 8) : '–'
  row.session.title = campaign.sessionId ?? ''
  // In a cluster: the node that runs (or ran) the session. Nothing outside one.
  if (campaign.node) {
    const node = h('div', { class: 'hint node' }, `on ${campaign.node}`)
    node.title = 'The node of the cluster that runs (or ran) this session'
    row.session.append(node)
  }
  const history = campaign.history ?? []
  row.historyCount.textContent = `${history.length} change${history.length === 1 ? '' : 's'}`
  row.historyList.replaceChildren(
    ...history
      .slice(-20)
      .map((entry) =>
        h(
          'li',
          {},
          `${clockTime(entry.at)} ${statusLabel(entry.status)}`,
          entry.reason ? ` (${reasonText(entry.reason)})` : ''
        )
      )
  )
  const active = campaign.hasActiveSession
  row.cleanup.disabled = !active && campaign.status !== 'timedOut' && campaign.status !== 'failed'
  if (row.phone) {
    row.phone.scan.disabled = campaign.status !== 'awaitingScan'
    row.phone.disconnect.disabled = !active
    row.phone.crash.disabled = !active
  }
}

function createRow(campaignId) {
  const badge = h('span', { class: 'badge' })
  const reason = h('div', { class: 'hint reason' })
  const detail = h('div', { class: 'failure-detail', hidden: true })
  const activity = h('td', { class: 'nowrap', 'data-label': 'Last activity' })
  const session = h('td', { class: 'mono', 'data-label': 'Session' })
  const historyCount = h('summary')
  const historyList = h('ol')
  const cleanup = h(
    'button',
    {
      type: 'button',
      class: 'small',
      'aria-label': `Clean up ${campaignId}`,
      onclick: () => cleanUp(campaignId, cleanup),
    },
    'Clean up'
  )
  const show = h(
    'button',
    {
      type: 'button',
      class: 'small',
      'aria-label': `Show the QR code for ${campaignId}`,
      onclick: () => {
        $('campaign-id').value = campaignId
        linkCampaign(campaignId, { force: false })
        $('link').scrollIntoView({ behavior: 'smooth' })
      },
    },
    'Link'
  )
  let phone = null
  const actions = h('div', { class: 'actions' }, show, cleanup)
  if (simulator) {
    const phoneButton = (action, label) =>
      h(
        'button',
        {
          type: 'button',
          class: action === 'crash' ? 'small danger' : 'small',
          'aria-label': `${label} (${campaignId})`,
          'data-phone': action,
          onclick: () => playPhone(campaignId, action),
        },
        label
      )
    phone = {
      scan: phoneButton('scan', 'Scan'),
      disconnect: phoneButton('disconnect', 'Disconnect'),
      crash: phoneButton('crash', 'Crash'),
    }
    actions.append(phone.scan, phone.disconnect, phone.crash)
  }
  const element = h(
    'tr',
    { 'data-campaign': campaignId },
    h('th', { scope: 'row', class: 'mono' }, campaignId),
    h('td', { 'data-label': 'Status' }, h('div', {}, badge, reason, detail)),
    activity,
    session,
    h('td', { 'data-label': 'History' }, h('details', {}, historyCount, historyList)),
    h('td', { 'data-label': 'Actions' }, actions)
  )
  return {
    element,
    badge,
    reason,
    detail,
    activity,
    session,
    historyCount,
    historyList,
    cleanup,
    phone,
  }
}

async function cleanUp(campaignId, button) {
  button.disabled = true
  const previous = button.textContent
  button.textContent = 'Cleaning…'
  try {
    const result = await api.post(
      `/api/campaigns/${encodeURIComponent(campaignId)}/cleanup-session`
    )
    $('live-state').textContent = result.hadSession
      ? `Cleaned up the session of ${campaignId}.`
      : `${campaignId} had no session to clean up.`
    const connection = await api.get(`/api/campaigns/${encodeURIComponent(campaignId)}/connection`)
    upsertCampaign(connection)
  } catch (error) {
    handleApiError(error, $('campaigns-error'))
  } finally {
    button.textContent = previous
  }
}

start()
