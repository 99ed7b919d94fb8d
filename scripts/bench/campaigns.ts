/**
 * One run of the campaign-records benchmark, in its own process (started by scripts/bench.ts):
 * N live sessions fill `MAX_SESSIONS`, then
 *
 * - 50,000 starts of new campaigns are refused (`at_capacity`): the heap after GC before and
 *   after them, and the campaigns remembered (a refusal must keep nothing);
 * - the campaign list is read a page at a time: the cost of one page of 100 (the first, one in
 *   the middle by cursor, one owner's) beside building every campaign's view (what one answer
 *   cost before the list was paged).
 *
 * Prints one JSON line of figures.
 *
 *   node --expose-gc --import tsx scripts/bench/campaigns.ts <N>
 *
 * @module
 */
import { createSimulatedEngine } from '../../src/engines/simulated.ts'
import { createSessionService } from '../../src/session/service.ts'

const N = Number(process.argv[2] ?? '1000')
const REFUSALS = 50_000
const WARM_UP_REFUSALS = 5_000
const OWNERS = 10
const PAGE = 100

export interface CampaignFigures {
  n: number
  refusals: number
  heapBeforeBytes: number
  heapAfterBytes: number
  campaignsBefore: number
  campaignsAfter: number
  firstPageUs: number
  middlePageUs: number
  ownerPageUs: number
  everyViewUs: number
}

const gc = (globalThis as { gc?: () => void }).gc
if (!gc) throw new Error('run with node --expose-gc')
function heapUsed(): number {
  gc!()
  gc!()
  return process.memoryUsage().heapUsed
}

async function until(condition: () => boolean, what: string, limitMs = 300_000): Promise<void> {
  const deadline = Date.now() + limitMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/**
 * µs per call of `fn`: the best of 5 batches of ~40 ms each, after a warm-up (the machine is
 * shared; the best batch is the one least disturbed).
 */
function timeUs(fn: () => unknown): number {
  const batch = (ms: number) => {
    let runs = 0
    const start = performance.now()
    while (runs < 3 || performance.now() - start < ms) {
      fn()
      runs++
    }
    return ((performance.now() - start) * 1000) / runs
  }
  batch(50)
  return Math.min(...Array.from({ length: 5 }, () => batch(40)))
}

const sim = createSimulatedEngine({ qrDelayMs: 50, qrRotateMs: 3_600_000 })
const sessions = createSessionService({
  engine: sim,
  timeouts: {
    initMs: 3_600_000,
    scanMs: 3_600_000,
    authMs: 60_000,
    destroyMs: 10_000,
    killMs: 5_000,
  },
  maxSessions: N,
})
for (let i = 0; i < N; i++) {
  const caller = { userId: `owner${i % OWNERS}`, admin: false }
  const result = sessions.requestSession({ campaignId: `c${i}`, caller })
  if (!result.ok) throw new Error(`start ${i} refused: ${result.error}`)
}
await until(() => sessions.stats().byStatus.awaitingScan === N, 'every QR')

function refuse(prefix: string, count: number): void {
  const caller = { userId: 'someone-else', admin: false }
  for (let i = 0; i < count; i++) {
    const result = sessions.requestSession({ campaignId: `${prefix}${i}`, caller })
    if (result.ok || result.error !== 'at_capacity') throw new Error(`refusal ${i} was not refused`)
  }
}
// Warm-up: one-time costs (JIT, XState's memoised transitions) are not costs of a refusal.
refuse('warm-', WARM_UP_REFUSALS)
const campaignsBefore = sessions.stats().campaigns
const heapBefore = heapUsed()
refuse('refused-', REFUSALS)
const heapAfter = heapUsed()
const campaignsAfter = sessions.stats().campaigns

// Warm-up of the list, as for the refusals.
timeUs(() => sessions.listCampaigns({ limit: PAGE, after: N / 3 }))
let middle: number | null = null
for (let after: number | undefined, read = 0; read < N / 2; read += PAGE) {
  middle = sessions.listCampaigns({ limit: PAGE, after }).next
  after = middle ?? undefined
}
const figures: CampaignFigures = {
  n: N,
  refusals: REFUSALS,
  heapBeforeBytes: heapBefore,
  heapAfterBytes: heapAfter,
  campaignsBefore,
  campaignsAfter,
  firstPageUs: timeUs(() => sessions.listCampaigns({ limit: PAGE })),
  middlePageUs: timeUs(() => sessions.listCampaigns({ limit: PAGE, after: middle ?? undefined })),
  ownerPageUs: timeUs(() =>
    sessions.listCampaigns({ owner: `owner${OWNERS - 1}`, limit: PAGE, after: middle ?? undefined })
  ),
  everyViewUs: timeUs(() => sessions.listCampaigns()),
}
await sessions.shutdown()
if (sim.liveCount() !== 0) throw new Error('engines left after shutdown')
console.log(JSON.stringify(figures))
