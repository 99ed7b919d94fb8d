/**
 * The wwebjs engine's capacity: the memory one session is planned to take, and the default for
 * MAX_SESSIONS it gives.
 *
 * @module
 */

/**
 * Memory one live session is planned to take: Chromium's whole process tree. Measured idle on a
 * stand-in page (docs/benchmarks/wwebjs.md): about 205 MiB PSS per session when several run
 * (388 MiB for a lone one, which carries all of Chromium's shared pages). WhatsApp Web's own
 * heap and IndexedDB cache come on top and grow with chat history (others report 300-500 MB per
 * session), so we plan for 500 MiB.
 */
export const PLANNED_BYTES_PER_SESSION = 500 * 1024 * 1024
/** Kept free for Node itself, the OS and page cache. */
export const RESERVED_BYTES = 1024 * 1024 * 1024

/**
 * A default for MAX_SESSIONS: how many wwebjs sessions a machine with this much memory can hold,
 * keeping `RESERVED_BYTES` (or a tenth of the memory, if more) for Node and the OS. At least 1.
 *
 * @example
 * recommendedMaxSessions(os.totalmem()) // 8 GiB → 14, 16 GiB → 29
 */
export function recommendedMaxSessions(totalMemoryBytes: number): number {
  if (!Number.isFinite(totalMemoryBytes) || totalMemoryBytes <= 0) return 1
  const reserved = Math.max(RESERVED_BYTES, totalMemoryBytes / 10)
  return Math.max(1, Math.floor((totalMemoryBytes - reserved) / PLANNED_BYTES_PER_SESSION))
}
