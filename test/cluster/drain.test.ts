/**
 * The drain's steps on their own (the multi-process rolling restart is in cluster.test.ts): a
 * batch at a time, each handed over, its leases released, the events settled, the handover
 * announced, then awaited until ready on another node; one never seen ready is named in the log
 * by its session tag (a session id is a capability and never reaches a log), and the drain goes on.
 */
import { Writable } from 'node:stream'
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { drainNode, type DrainOptions } from '../../src/cluster/drain.ts'
import type { CampaignView } from '../../src/session/api.ts'
import { sessionTag } from '../../src/sessionTag.ts'

interface Shown {
  status: string
  node: string | null
  sessionId: string | null
}

/** A node with linked campaigns, whose handed-over campaigns become ready elsewhere on request. */
function drainingNode(campaignIds: string[]) {
  const steps: string[] = []
  const shown = new Map<string, Shown>(
    campaignIds.map((id) => [id, { status: 'ready', node: 'node-a', sessionId: `${id}-here` }])
  )
  const lines: Array<Record<string, unknown>> = []
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk, _encoding, done) {
        lines.push(JSON.parse(String(chunk)) as Record<string, unknown>)
        done()
      },
    })
  )
  /** Campaigns the other node starts once a handover is announced (all, unless told). */
  let startedElsewhere = (_campaignId: string) => true
  const handedOver: string[] = []
  const options: DrainOptions = {
    sessions: {
      getCampaign: (campaignId) => shown.get(campaignId) as unknown as CampaignView,
      shouldRun: () => true,
      handOver: async (campaignId) => {
        steps.push(`handOver ${campaignId}`)
        handedOver.push(campaignId)
        shown.set(campaignId, {
          status: 'cleaned',
          node: 'node-a',
          sessionId: `${campaignId}-here`,
        })
        return { campaignId, sessionId: `${campaignId}-here`, hadSession: true }
      },
    },
    engine: {
      runningCampaigns: () => [...campaignIds],
      releases: async () => {
        steps.push('releases')
      },
    },
    events: {
      settled: async () => {
        steps.push('settled')
      },
      announceHandover: () => {
        steps.push('announce')
        const batch = handedOver.splice(0)
        setTimeout(() => {
          for (const campaignId of batch.filter((id) => startedElsewhere(id))) {
            shown.set(campaignId, {
              status: 'ready',
              node: 'node-b',
              sessionId: `${campaignId}-elsewhere`,
            })
          }
        }, 150)
      },
    },
    otherNodes: async () => 1,
    batch: 2,
    waitMs: 2_000,
    totalMs: 10_000,
    nodeId: 'node-a',
    logger,
  }
  return {
    options,
    steps,
    lines,
    startOnly(filter: (campaignId: string) => boolean) {
      startedElsewhere = filter
    },
  }
}

describe('drainNode', () => {
  it('hands linked campaigns over a batch at a time: stop, release, settle, announce, then ready elsewhere', async () => {
    const node = drainingNode(['c1', 'c2', 'c3'])
    await drainNode(node.options)
    expect(node.steps).toEqual([
      'handOver c1',
      'handOver c2',
      'releases',
      'settled',
      'announce',
      'handOver c3',
      'releases',
      'settled',
      'announce',
    ])
    expect(node.lines.map((line) => line.msg)).toEqual([
      'draining: handing linked campaigns over',
      'draining: handed over',
    ])
  })

  it('goes on after waitMs when a campaign is not seen ready elsewhere, naming its session by tag only', async () => {
    const node = drainingNode(['c1', 'c2'])
    node.startOnly((campaignId) => campaignId !== 'c2')
    node.options.waitMs = 400
    const started = Date.now()
    await drainNode(node.options)
    expect(Date.now() - started).toBeGreaterThanOrEqual(400)
    const warning = node.lines.find((line) => line.level === 40)
    expect(warning).toMatchObject({
      msg: 'draining: not seen ready on another node in time; going on',
      waiting: 1,
      campaigns: [
        { campaignId: 'c2', status: 'cleaned', node: 'node-a', session: sessionTag('c2-here') },
      ],
    })
    expect(JSON.stringify(node.lines)).not.toContain('c2-here')
    expect(node.lines.at(-1)?.msg).toBe('draining: handed over')
  })

  it('hands nothing over when no other node takes sessions', async () => {
    const node = drainingNode(['c1'])
    node.options.otherNodes = async () => 0
    await drainNode(node.options)
    expect(node.steps).toEqual([])
    expect(node.lines.map((line) => line.msg)).toEqual([
      'draining: no other node takes sessions; linked campaigns wait for the next start',
    ])
  })
})
