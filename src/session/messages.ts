/**
 * Sentences for people: what a subscriber is told when a session ends badly.
 *
 * @module
 */
import type { EngineTerminationKind } from '../engines/engine.ts'
import type { FailureReason } from './status.ts'

export interface DeadlineSettings {
  initMs: number
  scanMs: number
  authMs: number
}

export function describeFailure(
  code: FailureReason,
  timeouts: DeadlineSettings,
  failureKind: EngineTerminationKind | null,
  /** The session linked with a phone number (a pairing code) rather than a QR. */
  { byPairingCode = false }: { byPairingCode?: boolean } = {}
): string {
  if (code === 'scan_timeout' && byPairingCode) {
    return `The pairing code was not entered on the phone within ${seconds(timeouts.scanMs)}; the session was cleaned up.`
  }
  switch (code) {
    case 'init_timeout':
      return `WhatsApp did not show a QR code within ${seconds(timeouts.initMs)}; the session was cleaned up.`
    case 'scan_timeout':
      return `The QR code was not scanned within ${seconds(timeouts.scanMs)}; the session was cleaned up.`
    case 'auth_timeout':
      return `WhatsApp did not finish linking within ${seconds(timeouts.authMs)} of the scan; the session was cleaned up.`
    case 'logged_out':
      return 'The phone logged this device out; scan a new QR code to link the campaign again.'
    case 'unresponsive':
      return 'The session looked connected but WhatsApp stopped answering; the session was cleaned up.'
    case 'node_lost':
      return 'The node running this session was lost (it died or lost its lease); request a new session to continue.'
    case 'engine_failed':
      return failureKind === 'crashed'
        ? 'The WhatsApp client stopped unexpectedly; the session was cleaned up.'
        : 'The WhatsApp client could not be started or failed; the session was cleaned up.'
  }
}

function seconds(ms: number): string {
  const s = ms / 1000
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`
}
