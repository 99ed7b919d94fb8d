/**
 * The campaign routes of the contract: `qr-code`, `connection`, `cleanup-session` and the list.
 * Each handler parses, authorizes (middleware), calls one `SessionService` method and shapes the
 * answer.
 *
 * @module
 */
import { Hono } from 'hono'
import { z } from 'zod'
import { toCaller } from '../auth/identity.ts'
import { SupersededQrError, type QrImageRenderer } from '../qr/renderer.ts'
import type { CampaignView, SessionService } from '../session/api.ts'
import type { Logger } from '../logger.ts'
import { sessionTag } from '../sessionTag.ts'
import { readJsonBody } from './body.ts'
import { ApiError } from './errors.ts'
import { authorizeCampaign, type AppEnv } from './middleware.ts'
import { encodeCursor, parsePageQuery } from './paging.ts'
import { connectionJson, isoTime } from './views.ts'

export interface CampaignRoutesOptions {
  sessions: SessionService
  qrImages: QrImageRenderer
  logger: Logger
  /** How long an answer waits for the current QR's image before it says `qrCode: null`. */
  qrImageWaitMs?: number
}

const qrCodeBody = z.strictObject({ force: z.boolean().optional() })

/**
 * The `/api/campaigns` routes, to be mounted behind bearer authentication.
 *
 * @example
 * api.route('/campaigns', createCampaignRoutes({ sessions, qrImages, logger }))
 */
export function createCampaignRoutes({
  sessions,
  qrImages,
  logger,
  qrImageWaitMs = 2000,
}: CampaignRoutesOptions): Hono<AppEnv> {
  const routes = new Hono<AppEnv>()

  /** The image of the QR the view shows, if any; null rather than a late answer. */
  async function qrImageOf(view: CampaignView): Promise<string | null> {
    if (view.qr === null || view.sessionId === null) return null
    const render = qrImages.imageFor({ sessionId: view.sessionId, ...view.qr })
    let timer: ReturnType<typeof setTimeout> | undefined
    const late = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), qrImageWaitMs)
    })
    try {
      return await Promise.race([render, late])
    } catch (error) {
      if (!(error instanceof SupersededQrError)) {
        logger.error(
          { campaignId: view.campaignId, session: sessionTag(view.sessionId), err: error },
          'QR image render failed'
        )
      }
      return null
    } finally {
      clearTimeout(timer)
    }
  }

  routes.get('/', (c) => {
    const identity = c.get('identity')
    const { limit, after } = parsePageQuery({
      limit: c.req.query('limit'),
      cursor: c.req.query('cursor'),
    })
    const page = sessions.listCampaigns({
      owner: identity.admin ? undefined : identity.userId,
      campaignIds: identity.campaigns ?? undefined,
      limit,
      after,
    })
    return c.json({
      campaigns: page.campaigns.map(connectionJson),
      nextCursor: encodeCursor(page.next),
    })
  })

  routes.use('/:campaignId/*', authorizeCampaign({ sessions }))

  routes.post('/:campaignId/qr-code', async (c) => {
    const campaignId = c.get('campaignId')
    const identity = c.get('identity')
    const body = await readJsonBody(c, qrCodeBody)
    const force = body.force ?? parseForceQuery(c.req.query('force'))

    const result = sessions.requestSession({ campaignId, caller: toCaller(identity), force })
    if (!result.ok) {
      switch (result.error) {
        case 'at_capacity':
          throw new ApiError(
            503,
            'at_capacity',
            'The service runs as many sessions as it can; try again later.',
            { 'Retry-After': String(result.retryAfterSeconds) }
          )
        case 'shutting_down':
          throw new ApiError(503, 'shutting_down', 'The service is shutting down.', {
            'Retry-After': '5',
          })
        case 'forbidden':
          throw new ApiError(403, 'forbidden', `You may not act on campaign ${campaignId}.`)
      }
    }
    const { outcome, view } = result
    logger.info(
      { campaignId, session: sessionTag(view.sessionId), outcome, force, userId: identity.userId },
      'QR code requested'
    )
    return c.json(
      {
        campaignId,
        sessionId: view.sessionId,
        status: view.status,
        isConnected: view.isConnected,
        qrCode: await qrImageOf(view),
        expiresAt: isoTime(view.expiresAt),
        reused: outcome !== 'started',
      },
      outcome === 'started' ? 202 : 200
    )
  })

  routes.get('/:campaignId/connection', (c) => {
    return c.json(connectionJson(sessions.getCampaign(c.get('campaignId'))))
  })

  routes.post('/:campaignId/cleanup-session', async (c) => {
    const campaignId = c.get('campaignId')
    const result = await sessions.cleanupSession(campaignId)
    logger.info(
      { campaignId, session: sessionTag(result.sessionId), hadSession: result.hadSession },
      'Session cleanup requested'
    )
    return c.json({
      message: 'Session cleaned up successfully',
      campaignId,
      sessionId: result.sessionId,
      hadSession: result.hadSession,
    })
  })

  return routes
}

/** `?force=true|false|1|0`; absent is false, anything else (an empty value too) is 400. */
function parseForceQuery(value: string | undefined): boolean {
  if (value === undefined || value === 'false' || value === '0') return false
  if (value === 'true' || value === '1') return true
  throw new ApiError(400, 'invalid_body', 'The query parameter force must be true, false, 1 or 0.')
}
