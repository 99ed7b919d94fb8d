/**
 * The simulated engine's controls (`WA_ENGINE=simulated` only): routes that play the phone's part,
 * under the same authentication and campaign access rules as the API.
 *
 * @module
 */
import { Hono } from 'hono'
import { z } from 'zod'
import type { Logger } from '../logger.ts'
import type { SessionService } from '../session/api.ts'
import { sessionTag } from '../sessionTag.ts'
import { readJsonBody } from './body.ts'
import { ApiError } from './errors.ts'
import { authorizeCampaign, type AppEnv } from './middleware.ts'

export interface SimulatedBehaviour {
  startup?: 'qr' | 'hang' | 'error' | 'restored'
  teardown?: 'normal' | 'hang'
}

/** What the routes need of the simulated engine (a `SimulatedEngine` is one). */
export interface SimulatorControls {
  /** The phone scans the current QR; false if none is shown. */
  scan(campaignId: string): boolean
  /** The phone logs the device out; false if there is nothing to log out. */
  disconnect(campaignId: string): boolean
  /** The engine dies; false if none runs. */
  crash(campaignId: string): boolean
  setBehaviour(campaignId: string, behaviour: SimulatedBehaviour): void
}

const behaviourBody = z
  .strictObject({
    startup: z.enum(['qr', 'hang', 'error', 'restored']).optional(),
    teardown: z.enum(['normal', 'hang']).optional(),
  })
  .refine((body) => body.startup !== undefined || body.teardown !== undefined, {
    error: 'give "startup" and/or "teardown"',
  })

/**
 * The `/api/simulator/campaigns` routes, to be mounted behind bearer authentication.
 *
 * @example
 * api.route('/simulator/campaigns', createSimulatorRoutes({ simulator: engine, sessions, logger }))
 */
export function createSimulatorRoutes({
  simulator,
  sessions,
  logger,
}: {
  simulator: SimulatorControls
  sessions: Pick<SessionService, 'ownerOf' | 'getCampaign'>
  logger: Logger
}): Hono<AppEnv> {
  const routes = new Hono<AppEnv>()
  routes.use('/:campaignId/*', authorizeCampaign({ sessions }))

  const phoneAction = (
    action: 'scan' | 'disconnect' | 'crash',
    done: string,
    nothingToDo: string
  ) =>
    routes.post(`/:campaignId/${action}`, (c) => {
      const campaignId = c.get('campaignId')
      const { sessionId } = sessions.getCampaign(campaignId)
      if (!simulator[action](campaignId)) {
        throw new ApiError(409, 'nothing_to_do', nothingToDo.replace('{id}', campaignId))
      }
      logger.info({ campaignId, session: sessionTag(sessionId), action }, 'Simulator action')
      return c.json({ campaignId, sessionId, message: done })
    })

  phoneAction('scan', 'The phone scanned the QR code.', 'No QR code is shown for campaign {id}.')
  phoneAction(
    'disconnect',
    'The phone logged the device out.',
    'Campaign {id} has no linked session to log out.'
  )
  phoneAction('crash', 'The engine crashed.', 'Campaign {id} has no running engine.')

  routes.put('/:campaignId/behaviour', async (c) => {
    const campaignId = c.get('campaignId')
    const behaviour = await readJsonBody(c, behaviourBody)
    simulator.setBehaviour(campaignId, behaviour)
    logger.info({ campaignId, behaviour }, 'Simulator behaviour set')
    return c.json({ campaignId, behaviour })
  })

  return routes
}
