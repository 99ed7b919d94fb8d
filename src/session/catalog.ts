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
  CAMPAIGN_DESIGN_NOTES,
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
  SUPERVISOR_DESIGN_NOTES,
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
  /** The machine's own `description`. */
  summary: string
  /** Why it is as it is: paragraphs of the design notes. */
  notes: string[]
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
        probe: async () => ({ state: 'CONNECTED' }),
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
      summary: campaign.root.description ?? '',
      notes: CAMPAIGN_DESIGN_NOTES,
      machine: campaign,
      docs: { events: CAMPAIGN_EVENTS, guards: CAMPAIGN_GUARDS, delays: CAMPAIGN_DELAYS },
    },
    {
      id: 'supervisor',
      title: 'Supervisor machine',
      summary: supervisor.root.description ?? '',
      notes: SUPERVISOR_DESIGN_NOTES,
      machine: supervisor,
      docs: { events: SUPERVISOR_EVENTS, guards: SUPERVISOR_GUARDS, delays: SUPERVISOR_DELAYS },
    },
  ]
}
