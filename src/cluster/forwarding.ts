/**
 * Any node answers any request: a campaign's requests go to the node that runs its session.
 *
 * The middleware sits on the campaign routes (`/api/campaigns/:id/…` and the simulator's
 * `/api/simulator/campaigns/:id/…`), after the caller's token was verified:
 * - a request a node forwarded (`x-qrvisor-node`, signed with `CLUSTER_SECRET`) is answered
 *   here; a forged or stale signature is refused;
 * - a campaign whose lease another node holds: the request is forwarded to that node, the
 *   caller's headers and body with it, and its answer is returned as it is;
 * - a start for a campaign nobody runs is placed: here if this node has room (it takes the lease
 *   first, so two nodes never start one campaign), else on the least loaded live node; when no
 *   node has room this node answers `at_capacity` itself;
 * - anything else is answered here (the session table knows the other nodes' sessions).
 *
 * The campaign's webhook routes are answered by any node (they live in the database).
 *
 * @module
 */
import http from 'node:http'
import https from 'node:https'
import type { Context, MiddlewareHandler } from 'hono'
import { CAMPAIGN_ID_PATTERN } from '../session/api.ts'
import { sendError } from '../http/errors.ts'
import type { Logger } from '../logger.ts'
import type { CampaignLeases } from './campaignLeases.ts'
import type { LeaseHolder, NodeAddress } from './leaseTable.ts'
import { NODE_HEADER, type NodeSigner } from './nodeAuth.ts'

export interface ForwardingOptions {
  /** This node (its id is known once it listens). */
  node: NodeAddress
  signer: NodeSigner
  leases: CampaignLeases
  /** Who holds the campaign's lease, by the database. */
  holderOf(campaignId: string): Promise<LeaseHolder | undefined>
  /**
   * The node whose session of the campaign is live, as this node knows it (its own sessions, and
   * the others' from their events); undefined when none is. Lets the node running a campaign
   * answer it without asking the database, and a read go straight to the node running it.
   */
  runningOn(campaignId: string): string | undefined
  /** How to reach a live node (from the heartbeats); undefined if not known. */
  urlOf(nodeId: string): string | undefined
  /** Where a new session goes: `here`, or another node's URL. */
  place(): Promise<{ here: true } | { here: false; nodeId: string; url: string }>
  logger: Logger
  /**
   * How long a forwarded read (GET, HEAD) may take before this node answers it from what it
   * knows (a frozen owner must not hold readers), and how long any other forwarded request may
   * take (a cleanup waits for its engine's teardown).
   */
  timeouts: { readMs: number; writeMs: number }
}

const ANSWERED_BY = 'x-qrvisor-answered-by'
/** A node that does not answer is said so in the log at most this often. */
const COMPLAINT_INTERVAL_MS = 10_000
const CAMPAIGN_PATH = /^\/api\/(?:simulator\/)?campaigns\/([^/]+)\/([^/]+)/
/** Hop-by-hop and framing headers: never copied across a forward. */
const DROPPED_HEADERS = new Set([
  'host',
  'connection',
  'keep-alive',
  'content-length',
  'transfer-encoding',
  'content-encoding',
  'upgrade',
  NODE_HEADER,
])

export function clusterForwarding(options: ForwardingOptions): MiddlewareHandler {
  const { node, signer, leases, logger, timeouts } = options
  /** When each node that did not answer was last logged (bounded by the cluster's nodes). */
  const lastComplaint = new Map<string, number>()
  return async (c, next) => {
    const match = CAMPAIGN_PATH.exec(c.req.path)
    if (!match) return next()
    const [, rawId, action] = match
    const signature = c.req.header(NODE_HEADER)
    if (signature !== undefined) {
      if (!signer.verify(signature, c.req.method, c.req.path)) {
        return sendError(c, 403, 'forbidden', 'The node-to-node signature is not valid.')
      }
      return next()
    }
    const campaignId = decodeSafely(rawId!)
    if (!campaignId || !CAMPAIGN_ID_PATTERN.test(campaignId) || action === 'webhook') return next()

    // What this node knows first: its own live session (it holds the lease), or, for a read,
    // another node's (its events say so, within milliseconds). Changes ask the database.
    const known = options.runningOn(campaignId)
    if (known === node.nodeId) return next()
    const isRead = c.req.method === 'GET' || c.req.method === 'HEAD'
    const knownUrl = known !== undefined && isRead ? options.urlOf(known) : undefined
    if (knownUrl !== undefined) {
      const answer = await forward(c, { nodeId: known!, url: knownUrl }, campaignId)
      return answer.headers.has(ANSWERED_BY) ? answer : next()
    }

    let holder: LeaseHolder | undefined
    try {
      holder = await options.holderOf(campaignId)
    } catch (error) {
      // The database is down: this node answers from what it knows.
      logger.warn({ err: error, campaignId }, 'the lease of a campaign could not be read')
      return next()
    }
    const runs = holder && !holder.released && holder.expiresInMs > 0 ? holder : undefined
    if (runs && runs.nodeId !== node.nodeId) {
      const answer = await forward(c, runs, campaignId)
      // A read is answered here when the owner does not answer (what this node knows of it).
      if (!answer.headers.has(ANSWERED_BY) && isRead) return next()
      return answer
    }

    const isStart =
      c.req.method === 'POST' &&
      (action === 'qr-code' || action === 'pairing-code') &&
      !c.req.path.startsWith('/api/simulator/')
    if (!isStart || runs) return next()
    const place = await options.place().catch(() => ({ here: true as const }))
    if (!place.here) return forward(c, { nodeId: place.nodeId, url: place.url }, campaignId)
    const lease = await leases.ensure(campaignId).catch(() => undefined)
    if (lease && !lease.ok) return forward(c, lease.heldBy, campaignId)
    return next()
  }

  async function forward(
    c: Context,
    to: Pick<LeaseHolder, 'nodeId' | 'url'>,
    campaignId: string
  ): Promise<Response> {
    const headers: Record<string, string> = {}
    // The Node request's own headers when served by @hono/node-server (building the fetch
    // Request just to read them costs more than the forward).
    const incoming = (c.env as { incoming?: http.IncomingMessage } | undefined)?.incoming
    if (incoming) {
      for (const [name, value] of Object.entries(incoming.headers)) {
        if (value === undefined || DROPPED_HEADERS.has(name)) continue
        headers[name] = Array.isArray(value) ? value.join(', ') : value
      }
    } else {
      c.req.raw.headers.forEach((value, name) => {
        if (!DROPPED_HEADERS.has(name.toLowerCase())) headers[name] = value
      })
    }
    headers[NODE_HEADER] = signer.sign(c.req.method, c.req.path, node.nodeId)
    const pathAndQuery = incoming?.url ?? `${c.req.path}${new URL(c.req.url).search}`
    const target = new URL(pathAndQuery, to.url)
    const hasBody = c.req.method !== 'GET' && c.req.method !== 'HEAD'
    const body = hasBody ? Buffer.from(await c.req.arrayBuffer()) : undefined
    if (body) headers['content-length'] = String(body.length)
    try {
      const answer = await send(
        target,
        c.req.method,
        headers,
        body,
        hasBody ? timeouts.writeMs : timeouts.readMs
      )
      const copied = new Headers()
      for (const [name, value] of Object.entries(answer.headers)) {
        if (value === undefined || DROPPED_HEADERS.has(name)) continue
        for (const each of Array.isArray(value) ? value : [value]) copied.append(name, each)
      }
      copied.set(ANSWERED_BY, to.nodeId)
      const content =
        answer.status === 204 || answer.status === 304 ? null : new Uint8Array(answer.body)
      return new Response(content, {
        status: answer.status,
        headers: copied,
      })
    } catch (error) {
      // Once per node per interval: a dead node would otherwise log every request meanwhile.
      const now = Date.now()
      if ((lastComplaint.get(to.nodeId) ?? 0) + COMPLAINT_INTERVAL_MS <= now) {
        lastComplaint.set(to.nodeId, now)
        logger.warn(
          {
            node: to.nodeId,
            campaignId,
            error: error instanceof Error ? error.message : String(error),
          },
          'a node did not answer a forwarded request (said once per 10 s per node)'
        )
      }
      return sendError(
        c,
        503,
        'node_unavailable',
        `The node running campaign ${campaignId} (${to.nodeId}) did not answer; if it is gone, another node takes the campaign over once its lease expires.`,
        { 'Retry-After': '5' }
      )
    }
  }
}

/** Keep-alive connections to the other nodes (Node's own client: cheaper per request than fetch). */
const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 64 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 64 }),
}

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

/** One request to another node, its whole answer read; rejects on a network error or timeout. */
function send(
  target: URL,
  method: string,
  headers: Record<string, string>,
  body: Buffer | undefined,
  timeoutMs: number
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const secure = target.protocol === 'https:'
    const request = (secure ? https : http).request(target, {
      method,
      headers,
      agent: secure ? agents['https:'] : agents['http:'],
      timeout: timeoutMs,
    })
    request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)))
    request.on('error', reject)
    request.on('response', (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('error', reject)
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 502,
          headers: response.headers,
          body: Buffer.concat(chunks),
        })
      )
    })
    request.end(body)
  })
}

function decodeSafely(text: string): string | undefined {
  try {
    return decodeURIComponent(text)
  } catch {
    return undefined
  }
}
