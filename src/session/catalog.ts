/**
 * The session core's machines, built with inert dependencies, for statecharts.md and the
 * inspector's diagrams: their definitions are what matters here, not their behaviour.
 *
 * @module
 */
import type { AnyStateMachine } from 'xstate'
import { systemClock } from '../clock.ts'
import {
  CAMPAIGN_DELAYS,
  CAMPAIGN_EVENTS,
  CAMPAIGN_GUARDS,
  createCampaignMachine,
} from './campaignMachine.ts'
import { createEngineControl } from './engineControl.ts'
import { CampaignTable } from './campaignTable.ts'
import {
  createSupervisorMachine,
  DEFAULT_RESTART_POLICY,
  SUPERVISOR_DELAYS,
  SUPERVISOR_EVENTS,
  SUPERVISOR_GUARDS,
} from './supervisorMachine.ts'

export interface MachineDocs {
  events: Record<string, string>
  guards: Record<string, string>
  delays: Record<string, string>
}

export interface DescribedMachine {
  id: string
  title: string
  summary: string
  machine: AnyStateMachine
  docs: MachineDocs
}

export function describedMachines(): DescribedMachine[] {
  const now = () => 0
  const campaign = createCampaignMachine({
    now,
    engines: createEngineControl({
      name: 'none',
      createSession: () => ({
        start: () => {},
        stop: async () => ({ forced: false, durationMs: 0 }),
      }),
      close: async () => {},
    }),
  })
  const registry = new CampaignTable({
    machine: campaign,
    timeouts: { initMs: 0, scanMs: 0, authMs: 0, teardownMs: 0 },
    clock: systemClock,
    now,
    maxTombstones: 0,
    tombstoneTtlMs: 0,
  })
  const supervisor = createSupervisorMachine({
    registry,
    maxSessions: 0,
    retryAfterSeconds: 0,
    restartPolicy: DEFAULT_RESTART_POLICY,
    now,
    random: () => 0,
    newSessionId: () => '',
    stopEngineOf: () => {},
    onError: () => {},
  })
  return [
    {
      id: 'campaign',
      title: 'Campaign session machine',
      summary:
        'One actor per session of a campaign. It owns every deadline of the session and every way out goes through `cleaning` (the bounded engine stop) to `cleaned`.',
      machine: campaign,
      docs: { events: CAMPAIGN_EVENTS, guards: CAMPAIGN_GUARDS, delays: CAMPAIGN_DELAYS },
    },
    {
      id: 'supervisor',
      title: 'Supervisor machine',
      summary:
        'Starts and stops campaign actors: one live session per campaign, `MAX_SESSIONS`, restarts of crashed ready sessions with backoff, graceful shutdown.',
      machine: supervisor,
      docs: { events: SUPERVISOR_EVENTS, guards: SUPERVISOR_GUARDS, delays: SUPERVISOR_DELAYS },
    },
  ]
}
