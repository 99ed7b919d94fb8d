/**
 * How the wwebjs engine words what went wrong: WhatsApp's disconnect reasons as the contract's
 * termination kinds, and any thrown value as one line of detail.
 *
 * @module
 */
import { inspect } from 'node:util'
import type { EngineTerminationKind } from '../engine.ts'

/** WhatsApp's reasons for `disconnected`, as the contract's termination kinds. */
export function terminationKindForDisconnect(reason: string): EngineTerminationKind {
  switch (reason) {
    // The phone unlinked the device: 'LOGOUT' from a post-logout navigation, UNPAIRED(_IDLE)
    // from a state change; which one arrives depends on which WhatsApp Web event fires first.
    case 'LOGOUT':
    case 'UNPAIRED':
    case 'UNPAIRED_IDLE':
      return 'logged_out'
    // CONFLICT (another WhatsApp Web took over), TOS_BLOCK, SMB_TOS_BLOCK, PROXYBLOCK,
    // DEPRECATED_VERSION, UNLAUNCHED, 'Max qrcode retries reached' and anything new.
    default:
      return 'engine_error'
  }
}

/**
 * Any thrown value as one line for an event's `detail`. Errors, and error-like objects, by their
 * message: puppeteer rethrows the WebSocket's `ErrorEvent` (not an Error) when Chromium dies while
 * it connects, which `String()` turned into "[object Object]". Anything else as `util.inspect`
 * shows it.
 *
 * @example
 * describeThrown(new Error('Target closed')) // 'Target closed'
 * describeThrown({ code: 'ECONNRESET' })      // "{ code: 'ECONNRESET' }"
 */
export function describeThrown(thrown: unknown): string {
  const text = messageOf(thrown) ?? inspect(thrown, { depth: 1, breakLength: Infinity })
  const firstLine = text.split('\n', 1)[0] ?? ''
  return firstLine.length > 300 ? `${firstLine.slice(0, 297)}...` : firstLine
}

function messageOf(thrown: unknown): string | undefined {
  if (thrown instanceof Error) return thrown.message || thrown.name
  if (typeof thrown === 'string') return thrown || undefined
  if (typeof thrown !== 'object' || thrown === null) return undefined
  // A DOM-style ErrorEvent carries `message` and the Error itself as `error`.
  const { message, error } = thrown as { message?: unknown; error?: unknown }
  if (typeof message === 'string' && message !== '') return message
  return error instanceof Error ? messageOf(error) : undefined
}
