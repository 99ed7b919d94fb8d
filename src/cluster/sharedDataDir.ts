/**
 * The check that every node of a cluster sees the same `DATA_DIR`: the wwebjs engine keeps each
 * campaign's WhatsApp login there, so a campaign taken over by another node is only still linked
 * if that node reads the same folder (NFS, EFS, a volume every node mounts).
 *
 * Each node writes `DATA_DIR/cluster/<its id>.marker` holding a random token and publishes the
 * token in its heartbeat row (`cluster_nodes.data_marker`). At start, a node looks for the marker
 * of every other live node on its own disk, and refuses to start when one never shows up or holds
 * another token. Network file systems cache attributes for a few seconds, so a marker is waited
 * for (`timeoutMs`, 10 s by default) before the folder is declared not shared.
 *
 * @module
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { delay, systemClock, type Clock } from '../clock.ts'
import type { LeaseTable } from './leaseTable.ts'

/** The folder of the markers, inside `DATA_DIR`. */
export const MARKER_FOLDER = 'cluster'

/** `DATA_DIR` is not the same folder on this node and on another one. */
export class DataDirNotSharedError extends Error {
  override name = 'DataDirNotSharedError'
  constructor(
    message: string,
    readonly nodeId: string,
    readonly path: string
  ) {
    super(message)
  }
}

export interface SharedDataDirOptions {
  dataDir: string
  /** This node's id (`NODE_ID`). */
  nodeId: string
  table: Pick<LeaseTable, 'publishDataMarker' | 'liveNodes'>
  /** `LEASE_TTL_MS`: the nodes heard from within it are checked. */
  ttlMs: number
  /** How long another node's marker is waited for (default 10 s: NFS attribute caches). */
  timeoutMs?: number
  /** How often the markers are looked for again meanwhile (default 250 ms). */
  pollMs?: number
  clock?: Clock
}

/**
 * The marker file of a node: its id made safe as a file name (anything but letters, digits, `.`,
 * `_` and `-` becomes `_`), with a short hash of the id so that two ids never share a file.
 */
export function markerPath(dataDir: string, nodeId: string): string {
  const safe = nodeId
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^\.+/, '_')
    .slice(0, 100)
  const hash = createHash('sha256').update(nodeId).digest('hex').slice(0, 8)
  return join(dataDir, MARKER_FOLDER, `${safe}-${hash}.marker`)
}

/**
 * Writes this node's marker, publishes its token, and waits until the marker of every other node
 * heard within `ttlMs` shows up here with that node's token. Call it once at start, after the
 * node's first heartbeat; later heartbeats keep the published token. Resolves with the token;
 * rejects with a `DataDirNotSharedError` naming the node and the path when a marker never shows
 * up or holds another token.
 *
 * @example
 * await table.heartbeat(node, instance, ttlMs)
 * const { token } = await checkSharedDataDir({ dataDir, nodeId, table, ttlMs })
 * // … and at a clean shutdown:
 * await removeDataDirMarker({ dataDir, nodeId, token })
 */
export async function checkSharedDataDir({
  dataDir,
  nodeId,
  table,
  ttlMs,
  timeoutMs = 10_000,
  pollMs = 250,
  clock = systemClock,
}: SharedDataDirOptions): Promise<{ token: string }> {
  const token = randomBytes(16).toString('hex')
  const own = markerPath(dataDir, nodeId)
  await mkdir(join(dataDir, MARKER_FOLDER), { recursive: true })
  // Written whole under another name, then renamed: another node never reads half a token.
  const partial = `${own}.${token}.tmp`
  await writeFile(partial, `${token}\n`)
  await rename(partial, own)
  if (!(await table.publishDataMarker(nodeId, token))) {
    throw new Error(
      `checkSharedDataDir: node ${nodeId} has no heartbeat row yet; call it after its first heartbeat`
    )
  }

  const deadline = clock.now() + timeoutMs
  for (;;) {
    // The tokens are read again each time: a node that restarted meanwhile has a new one.
    const unseen = await firstUnseenMarker(dataDir, nodeId, table, ttlMs)
    if (unseen === undefined) return { token }
    if (clock.now() >= deadline) {
      const what = unseen.found === undefined ? 'never showed up' : 'holds another token'
      throw new DataDirNotSharedError(
        `DATA_DIR is not shared with node ${unseen.nodeId}: its marker ${unseen.path} ${what} ` +
          `(waited ${timeoutMs} ms); every node must mount the same DATA_DIR (NFS, EFS, a shared ` +
          'volume): the saved WhatsApp logins are there',
        unseen.nodeId,
        unseen.path
      )
    }
    await delay(clock, pollMs)
  }
}

/** Removes this node's marker at a clean shutdown, unless a newer start with its id replaced it. */
export async function removeDataDirMarker({
  dataDir,
  nodeId,
  token,
}: {
  dataDir: string
  nodeId: string
  token: string
}): Promise<void> {
  const path = markerPath(dataDir, nodeId)
  if ((await readMarker(path)) === token) await rm(path, { force: true })
}

async function firstUnseenMarker(
  dataDir: string,
  nodeId: string,
  table: SharedDataDirOptions['table'],
  ttlMs: number
): Promise<{ nodeId: string; path: string; found: string | undefined } | undefined> {
  for (const node of await table.liveNodes(ttlMs)) {
    if (node.nodeId === nodeId || node.dataMarker === undefined) continue
    const path = markerPath(dataDir, node.nodeId)
    const found = await readMarker(path)
    if (found !== node.dataMarker) return { nodeId: node.nodeId, path, found }
  }
  return undefined
}

/** The token in a marker file; undefined if there is none. */
async function readMarker(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim()
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}
