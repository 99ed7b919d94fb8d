/**
 * Node-to-node authentication: a request one node forwards to another carries an HMAC-SHA256 of
 * its method, path and a timestamp under `CLUSTER_SECRET`, so the network is never trusted. The
 * user's own `Authorization` travels with it and is verified by the node that answers, as if the
 * user had asked it directly.
 *
 * @module
 */
import { createHmac, timingSafeEqual } from 'node:crypto'

export const NODE_HEADER = 'x-qrvisor-node'
/** How far a forwarded request's timestamp may be from the receiver's clock. */
const MAX_SKEW_MS = 60_000

export interface NodeSigner {
  /** The header value for a request `method path` sent by `nodeId` now. */
  sign(method: string, path: string, nodeId: string): string
  /** The sending node's id when the header is valid for `method path`; undefined otherwise. */
  verify(header: string, method: string, path: string): string | undefined
}

export function createNodeSigner(secret: string, now: () => number = Date.now): NodeSigner {
  const mac = (method: string, path: string, nodeId: string, at: string) =>
    createHmac('sha256', secret).update(`${method}\n${path}\n${nodeId}\n${at}`).digest('base64url')
  return {
    sign(method, path, nodeId) {
      const at = String(now())
      return `${encodeURIComponent(nodeId)}.${at}.${mac(method, path, nodeId, at)}`
    },
    verify(header, method, path) {
      const [encodedNode, at, signature] = header.split('.')
      if (!encodedNode || !at || !signature || !/^\d{1,16}$/.test(at)) return undefined
      if (Math.abs(now() - Number(at)) > MAX_SKEW_MS) return undefined
      let nodeId: string
      try {
        nodeId = decodeURIComponent(encodedNode)
      } catch {
        return undefined
      }
      const expected = Buffer.from(mac(method, path, nodeId, at))
      const given = Buffer.from(signature)
      return expected.length === given.length && timingSafeEqual(expected, given)
        ? nodeId
        : undefined
    },
  }
}
