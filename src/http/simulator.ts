/**
 * The simulated engine's controls (`WA_ENGINE=simulated` only): routes that play the phone's part,
 * under the same authentication and campaign access rules as the API.
 *
 * @module
 */
import { createRoute, OpenAPIHono } from '@hono/zod-openapi'
import type { Logger } from '../logger.ts'
import type { SessionService } from '../session/api.ts'
import { sessionTag } from '../sessionTag.ts'
import { jsonBody } from './body.ts'
import { ApiError } from './errors.ts'
import { authorizeCampaign, type AppEnv } from './middleware.ts'
import {
  behaviourAnswerSchema,
  behaviourBody,
  enterPairingCodeBody,
  bearerSecurity,
  CAMPAIGN_ERRORS,
  campaignIdParam,
  errors,
  json,
  simulatorActionSchema,
  validationHook,
} from './schemas.ts'

export interface SimulatedBehaviour {
  startup?: 'qr' | 'hang' | 'error' | 'restored'
  teardown?: 'normal' | 'hang'
  liveness?: 'healthy' | 'hang' | 'disconnected'
}

/** What the routes need of the simulated engine (a `SimulatedEngine` is one). */
export interface SimulatorControls {
  /** The phone scans the current QR; false if none is shown. */
  scan(campaignId: string): boolean
  /** The person types the pairing code on the phone; false if it is not the one shown. */
  enterPairingCode(campaignId: string, code: string): boolean
  /** The phone logs the device out; false if there is nothing to log out. */
  disconnect(campaignId: string): boolean
  /** The engine dies; false if none runs. */
  crash(campaignId: string): boolean
  setBehaviour(campaignId: string, behaviour: SimulatedBehaviour): void
}

const tags = ['simulator']

/** `POST /{campaignId}/<action>`: the phone (or the engine) does something. */
function phoneActionRoute(action: 'scan' | 'disconnect' | 'crash', summary: string) {
  return createRoute({
    method: 'post',
    path: `/{campaignId}/${action}`,
    tags,
    summary,
    description: '`WA_ENGINE=simulated` only: with `wwebjs` this route does not exist (404).',
    security: bearerSecurity,
    request: { params: campaignIdParam },
    responses: {
      200: json('Done.', simulatorActionSchema),
      ...errors({ ...CAMPAIGN_ERRORS, 409: ['nothing_to_do'], 413: ['invalid_body'] }),
    },
  })
}

const enterPairingCodeRoute = createRoute({
  method: 'post',
  path: '/{campaignId}/pairing-code',
  tags,
  summary: 'The person types the pairing code on the phone',
  description:
    '`WA_ENGINE=simulated` only: with `wwebjs` this route does not exist (404). A code other than the one shown is refused (409), as WhatsApp would, and the session keeps waiting.',
  security: bearerSecurity,
  middleware: [jsonBody],
  request: {
    params: campaignIdParam,
    body: { required: true, content: { 'application/json': { schema: enterPairingCodeBody } } },
  },
  responses: {
    200: json('Done.', simulatorActionSchema),
    ...errors({
      ...CAMPAIGN_ERRORS,
      400: ['invalid_campaign_id', 'invalid_body'],
      409: ['nothing_to_do'],
      413: ['invalid_body'],
    }),
  },
})

const behaviourRoute = createRoute({
  method: 'put',
  path: '/{campaignId}/behaviour',
  tags,
  summary: 'What the campaign’s next simulated sessions do',
  description: '`WA_ENGINE=simulated` only: with `wwebjs` this route does not exist (404).',
  security: bearerSecurity,
  middleware: [jsonBody],
  request: {
    params: campaignIdParam,
    body: { required: true, content: { 'application/json': { schema: behaviourBody } } },
  },
  responses: {
    200: json('The behaviour is set.', behaviourAnswerSchema),
    ...errors({
      ...CAMPAIGN_ERRORS,
      400: ['invalid_campaign_id', 'invalid_body'],
      413: ['invalid_body'],
    }),
  },
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
}): OpenAPIHono<AppEnv> {
  const routes = new OpenAPIHono<AppEnv>({ defaultHook: validationHook() })
  routes.use('/:campaignId/*', authorizeCampaign({ sessions }))

  const phoneAction = (
    action: 'scan' | 'disconnect' | 'crash',
    summary: string,
    done: string,
    nothingToDo: string
  ) =>
    routes.openapi(phoneActionRoute(action, summary), (c) => {
      const campaignId = c.get('campaignId')
      const { sessionId } = sessions.getCampaign(campaignId)
      if (!simulator[action](campaignId)) {
        throw new ApiError(409, 'nothing_to_do', nothingToDo.replace('{id}', campaignId))
      }
      logger.info({ campaignId, session: sessionTag(sessionId), action }, 'Simulator action')
      return c.json({ campaignId, sessionId, message: done }, 200)
    })

  phoneAction(
    'scan',
    'The phone scans the current QR',
    'The phone scanned the QR code.',
    'No QR code is shown for campaign {id}.'
  )
  phoneAction(
    'disconnect',
    'The phone logs the device out',
    'The phone logged the device out.',
    'Campaign {id} has no linked session to log out.'
  )
  phoneAction(
    'crash',
    'The engine dies without warning',
    'The engine crashed.',
    'Campaign {id} has no running engine.'
  )

  routes.openapi(enterPairingCodeRoute, (c) => {
    const campaignId = c.get('campaignId')
    const { sessionId } = sessions.getCampaign(campaignId)
    if (!simulator.enterPairingCode(campaignId, c.req.valid('json').code)) {
      throw new ApiError(
        409,
        'nothing_to_do',
        `Campaign ${campaignId} shows no pairing code, or another one.`
      )
    }
    logger.info(
      { campaignId, session: sessionTag(sessionId), action: 'pairing-code' },
      'Simulator action'
    )
    return c.json({ campaignId, sessionId, message: 'The phone took the pairing code.' }, 200)
  })

  routes.openapi(behaviourRoute, (c) => {
    const campaignId = c.get('campaignId')
    const behaviour = c.req.valid('json')
    simulator.setBehaviour(campaignId, behaviour)
    logger.info({ campaignId, behaviour }, 'Simulator behaviour set')
    return c.json({ campaignId, behaviour }, 200)
  })

  return routes
}
