/**
 * One HTTP POST of a signed event, and nothing more: no redirects followed, at most `timeoutMs`
 * for the answer, at most `maxResponseBytes` of the answer's body read (then the rest is
 * discarded), every connection through `safeLookup` so only checked addresses are reached.
 *
 * @module
 */
import http from 'node:http'
import https from 'node:https'
import { isIP } from 'node:net'
import { systemClock, type Clock } from '../clock.ts'
import { hostOf, isPublicAddress, safeLookup, type AddressPolicy } from './addressPolicy.ts'

export interface WebhookRequest {
  url: string
  body: string
  headers: Record<string, string>
}

export type SendResult =
  | { ok: true; status: number }
  /** `status` is null when no answer came (a connection error, the timeout). */
  | { ok: false; status: number | null; error: string }

export interface WebhookSenderOptions extends AddressPolicy {
  /** `WEBHOOK_TIMEOUT_MS`: from the request until the answer's status line. */
  timeoutMs: number
  /** Bytes of an answer's body read at most (kept for the error message of a failure). */
  maxResponseBytes?: number
  clock?: Clock
}

export interface WebhookSender {
  /** Sends once; never rejects. `signal` aborts it (the result is then a failure). */
  send(request: WebhookRequest, signal?: AbortSignal): Promise<SendResult>
  /** Closes every kept-alive connection. */
  close(): void
}

/** Characters of an answer's body kept in a delivery's last error. */
const ERROR_BODY_CHARS = 200

export function createWebhookSender(options: WebhookSenderOptions): WebhookSender {
  const { timeoutMs, maxResponseBytes = 4096, clock = systemClock } = options
  const lookup = safeLookup(options)
  // Connections are kept for the next delivery to the same receiver; `close` ends them.
  const agents = {
    'http:': new http.Agent({ keepAlive: true, lookup }),
    'https:': new https.Agent({ keepAlive: true, lookup }),
  }

  function send(request: WebhookRequest, signal?: AbortSignal): Promise<SendResult> {
    let url: URL
    try {
      url = new URL(request.url)
    } catch {
      return Promise.resolve({ ok: false, status: null, error: 'the URL is not valid' })
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return Promise.resolve({ ok: false, status: null, error: `${url.protocol} is not allowed` })
    }
    // An address in the URL is connected to without a lookup: check it here.
    const host = hostOf(url)
    if (!options.allowPrivate && isIP(host) !== 0 && !isPublicAddress(host)) {
      return Promise.resolve({
        ok: false,
        status: null,
        error: `${host} is not a public address`,
      })
    }
    return new Promise((resolve) => {
      let settled = false
      let status: number | null = null
      const chunks: Buffer[] = []
      let received = 0
      const finish = (result: SendResult) => {
        if (settled) return
        settled = true
        clock.clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        resolve(result)
      }
      const outcome = (): SendResult => {
        if (status === null) return { ok: false, status, error: 'no answer' }
        if (status >= 200 && status < 300) return { ok: true, status }
        if (status >= 300 && status < 400) {
          return { ok: false, status, error: `HTTP ${status}: redirects are not followed` }
        }
        const text = Buffer.concat(chunks).toString('utf8').replace(/\s+/g, ' ').trim()
        const excerpt = text.slice(0, ERROR_BODY_CHARS)
        return { ok: false, status, error: `HTTP ${status}${excerpt ? `: ${excerpt}` : ''}` }
      }

      const req = (url.protocol === 'https:' ? https : http).request(url, {
        method: 'POST',
        agent: url.protocol === 'https:' ? agents['https:'] : agents['http:'],
        lookup,
        headers: {
          ...request.headers,
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(request.body)),
          'user-agent': 'qrvisor-webhooks',
        },
      })
      const timer = clock.setTimeout(() => {
        // An answer whose status came in time counts, even if its body is still arriving.
        if (status !== null) finish(outcome())
        else finish({ ok: false, status: null, error: `no answer within ${timeoutMs} ms` })
        req.destroy()
      }, timeoutMs)
      const onAbort = () => {
        finish({ ok: false, status: null, error: 'aborted: the worker stopped' })
        req.destroy()
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      if (signal?.aborted) onAbort()

      req.on('response', (res) => {
        status = res.statusCode ?? null
        res.on('data', (chunk: Buffer) => {
          if (received < maxResponseBytes)
            chunks.push(chunk.subarray(0, maxResponseBytes - received))
          received += chunk.length
          if (received > maxResponseBytes) {
            // Enough: the rest is not read (the connection is not reused).
            finish(outcome())
            res.destroy()
          }
        })
        res.on('end', () => finish(outcome()))
        res.on('error', () => finish(outcome()))
        res.on('close', () => finish(outcome()))
      })
      req.on('error', (error: NodeJS.ErrnoException) => {
        finish({ ok: false, status: null, error: error.message || String(error.code) })
      })
      req.end(request.body)
    })
  }

  return {
    send,
    close() {
      agents['http:'].destroy()
      agents['https:'].destroy()
    },
  }
}
