/**
 * Whether `DATA_DIR` can take a write. Chromium keeps a campaign's WhatsApp login in its profile
 * under `DATA_DIR`, and on a full disk it goes on without saving it, saying nothing: the phone
 * links, and the next session asks for a new scan. So the service checks before it relies on it:
 * at start (a clear refusal) and before each wwebjs session (a clear `start_failed`).
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/** Enough bytes that a full disk refuses them (an empty file needs only an inode). */
const PROBE = Buffer.alloc(4096, 'qrvisor')

/**
 * Writes a small file under `dir` (created if missing) and removes it. Resolves undefined when
 * that works, else why not, as one line naming the directory (ENOSPC for a full disk, EROFS,
 * EACCES).
 *
 * @example
 * const problem = await whyNotWritable('/var/lib/qrvisor/wwebjs')
 * if (problem) throw new Error(problem)
 */
export async function whyNotWritable(dir: string): Promise<string | undefined> {
  const probe = join(dir, `.write-probe-${randomUUID()}`)
  try {
    await mkdir(dir, { recursive: true })
    await writeFile(probe, PROBE, { flush: true })
    return undefined
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    return `${dir} cannot be written (${reason})`
  } finally {
    await rm(probe, { force: true }).catch(() => {})
  }
}
