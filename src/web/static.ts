/**
 * Serving files from a fixed folder: the pages' own assets and the Mermaid bundle from
 * `node_modules`. Only files under the folder are served, only with a known type, and nothing
 * is read until someone asks for it.
 *
 * @module
 */
import { readFile } from 'node:fs/promises'
import { extname, resolve, sep } from 'node:path'

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
}

export interface StaticFile {
  body: Uint8Array<ArrayBuffer>
  contentType: string
}

export interface StaticFolder {
  /** The file at `relativePath` under the folder, or undefined (unknown, outside, or not a file). */
  read(relativePath: string): Promise<StaticFile | undefined>
}

/**
 * A folder whose files may be served. Files are cached in memory once read when `cache` is on
 * (the default): they never change while the process runs.
 *
 * @example
 * const assets = staticFolder(new URL('./assets/', import.meta.url).pathname)
 * const file = await assets.read('app.css')
 */
export function staticFolder(
  root: string,
  { cache = true }: { cache?: boolean } = {}
): StaticFolder {
  const base = resolve(root) + sep
  const cached = new Map<string, StaticFile>()

  return {
    async read(relativePath) {
      const contentType = CONTENT_TYPES[extname(relativePath)]
      if (!contentType || relativePath.includes('\0')) return undefined
      const path = resolve(base, relativePath)
      if (!path.startsWith(base)) return undefined
      const hit = cached.get(path)
      if (hit) return hit
      try {
        const file = { body: new Uint8Array(await readFile(path)), contentType }
        if (cache) cached.set(path, file)
        return file
      } catch {
        return undefined
      }
    },
  }
}
