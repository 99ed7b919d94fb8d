/**
 * What the inspector shows of an actor's context and events, and what it never shows: QR texts,
 * pairing codes and phone numbers, tokens and other secrets. One list of hidden keys, for the inspector's own page
 * (`summarizeContext`) and for the forwarding to Stately (`hideSecrets`).
 *
 * @module
 */

/**
 * Keys whose string values are never shown. `code` is a pairing code (it links the account like a
 * QR); `pairWithPhoneNumber` is the phone number a session links with.
 */
const HIDDEN_KEYS = new Set([
  'qr',
  'code',
  'pairWithPhoneNumber',
  'token',
  'secret',
  'password',
  'authorization',
])
/** Keys whose values are never shown, whatever they hold: a proxy's username and password. */
const HIDDEN_VALUES = new Set(['credentials'])
const MAX_CONTEXT_KEYS = 24
const MAX_VALUE_LENGTH = 160

export type ContextSummary = Record<string, string | number | boolean | null>

/** A copy of `value` with QR texts and tokens replaced, actor references left as they are. */
export function hideSecrets(value: unknown, depth = 0): unknown {
  if (depth > 6 || typeof value !== 'object' || value === null) return value
  if (Array.isArray(value)) return value.map((item) => hideSecrets(item, depth + 1))
  if (Object.getPrototypeOf(value) !== Object.prototype) return value
  const copy: Record<string, unknown> = {}
  for (const [key, inner] of Object.entries(value)) {
    const hidden =
      (HIDDEN_KEYS.has(key) && typeof inner === 'string') ||
      (HIDDEN_VALUES.has(key) && inner !== undefined && inner !== null)
    copy[key] = hidden ? '[hidden]' : hideSecrets(inner, depth + 1)
  }
  return copy
}

/**
 * A short, flat view of an actor's context for people: primitives as they are (times as ISO
 * strings), objects and arrays as short JSON, QR texts and tokens hidden.
 */
export function summarizeContext(context: Record<string, unknown> | null): ContextSummary {
  const summary: ContextSummary = {}
  if (!context) return summary
  let keys = 0
  for (const [key, value] of Object.entries(context)) {
    if (keys++ >= MAX_CONTEXT_KEYS) {
      summary['…'] = `${Object.keys(context).length - MAX_CONTEXT_KEYS} more`
      break
    }
    summary[key] = summarizeValue(key, value)
  }
  return summary
}

function summarizeValue(key: string, value: unknown): string | number | boolean | null {
  if (HIDDEN_KEYS.has(key) && typeof value === 'string') return '[hidden]'
  if (HIDDEN_VALUES.has(key) && value !== null && value !== undefined) return '[hidden]'
  if (value === null || value === undefined) return null
  if (typeof value === 'boolean') return value
  if (typeof value === 'number') return isTimeKey(key) && isEpochMs(value) ? iso(value) : value
  if (typeof value === 'string') return truncate(value)
  if (typeof value === 'function') return '[function]'
  if (Array.isArray(value)) {
    const last = value.length > 0 ? ` last: ${short(value[value.length - 1])}` : ''
    return truncate(`[${value.length}]${last}`)
  }
  if (isActorRef(value)) return `actor ${value.id}`
  if (value instanceof Map) return `Map(${value.size})`
  return short(value)
}

function short(value: unknown): string {
  try {
    return truncate(
      JSON.stringify(value, (key, inner: unknown) => {
        if (HIDDEN_KEYS.has(key) && typeof inner === 'string') return '[hidden]'
        if (isActorRef(inner)) return `actor ${inner.id}`
        if (typeof inner === 'number' && isTimeKey(key) && isEpochMs(inner)) return iso(inner)
        return inner
      }) ?? String(value)
    )
  } catch {
    return '[unreadable]'
  }
}

function isActorRef(value: unknown): value is { id: string } {
  return (
    typeof value === 'object' &&
    value !== null &&
    'send' in value &&
    'getSnapshot' in value &&
    'id' in value
  )
}

function isTimeKey(key: string): boolean {
  return /(At|Deadline|^at|^since|^until)$/.test(key)
}

function isEpochMs(value: number): boolean {
  return value > 1e12 && value < 1e13
}

function iso(ms: number): string {
  return new Date(ms).toISOString()
}

function truncate(text: string): string {
  return text.length > MAX_VALUE_LENGTH ? `${text.slice(0, MAX_VALUE_LENGTH - 1)}…` : text
}
