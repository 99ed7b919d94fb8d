/**
 * The campaign routes of the contract: `qr-code`, `connection`, `cleanup-session`, the list, and the
 * current QR as an image (`qr.png`, `qr.svg`).
 * Each handler parses, authorizes (middleware), calls one `SessionService` method and shapes the
 * answer.
 *
 * @module
 */
import { createRoute, OpenAPIHono } from '@hono/zod-openapi'
import { toCaller } from '../auth/identity.ts'
import { parseProxy, viewOfProxy, type ProxySettings } from '../proxy.ts'
import { SupersededQrError, type QrImageFormat, type QrImageRenderer } from '../qr/renderer.ts'
import type { CampaignView, SessionService, StartResult } from '../session/api.ts'
import type { Logger } from '../logger.ts'
import { sessionTag } from '../sessionTag.ts'
import { jsonBody } from './body.ts'
import { ApiError } from './errors.ts'
import { authorizeCampaign, type AppEnv } from './middleware.ts'
import { encodeCursor, parsePageQuery } from './paging.ts'
import {
  AUTH_ERRORS,
  bearerSecurity,
  CAMPAIGN_ERRORS,
  campaignIdParam,
  campaignListQuery,
  campaignListSchema,
  cleanupAnswerSchema,
  unlinkAnswerSchema,
  connectionSchema,
  errors,
  json,
  pairingCodeAnswerSchema,
  pairingCodeBody,
  qrCodeAnswerSchema,
  qrCodeBody,
  qrCodeQuery,
  qrImage,
  settingsAnswerSchema,
  settingsBody,
  validationHook,
} from './schemas.ts'
import { connectionJson, isoTime, pairingCodeJson } from './views.ts'

export interface CampaignRoutesOptions {
  sessions: SessionService
  qrImages: QrImageRenderer
  logger: Logger
  /** How long an answer waits for the current QR's image before it says `qrCode: null`. */
  qrImageWaitMs?: number
}

const tags = ['campaigns']

const listRoute = createRoute({
  method: 'get',
  path: '/',
  tags,
  summary: 'The caller’s campaigns, a page at a time',
  description:
    'Every campaign for an admin, narrowed to the token’s `campaigns` claim; oldest first. Only remembered campaigns are listed.',
  security: bearerSecurity,
  request: { query: campaignListQuery },
  responses: {
    200: json('A page of campaigns, each as its connection.', campaignListSchema),
    ...errors({ ...AUTH_ERRORS, 400: ['invalid_query'] }),
  },
})

const qrCodeRoute = createRoute({
  method: 'post',
  path: '/{campaignId}/qr-code',
  tags,
  summary: 'Start a session or join the live one',
  description: 'Answers at once: it never waits for the QR.',
  security: bearerSecurity,
  middleware: [jsonBody],
  request: {
    params: campaignIdParam,
    query: qrCodeQuery,
    body: { required: false, content: { 'application/json': { schema: qrCodeBody } } },
  },
  responses: {
    200: json('The live session was joined (`reused: true`).', qrCodeAnswerSchema),
    202: json('A new session was started (`reused: false`).', qrCodeAnswerSchema),
    ...errors({
      ...CAMPAIGN_ERRORS,
      400: ['invalid_campaign_id', 'invalid_body'],
      413: ['invalid_body'],
      503: ['at_capacity', 'shutting_down', 'store_unavailable', 'node_unavailable'],
    }),
  },
})

const pairingCodeRoute = createRoute({
  method: 'post',
  path: '/{campaignId}/pairing-code',
  tags,
  summary: 'Link with a phone number: start or join a session that shows a pairing code',
  description:
    'Instead of a QR, WhatsApp gives an 8-character code to type on the phone (Linked devices → Link with phone number). Answers at once; the code comes over the WebSocket (`pairing_code`) and in `connection`. A live session that links by QR or with another number is replaced (unless it is ready).',
  security: bearerSecurity,
  middleware: [jsonBody],
  request: {
    params: campaignIdParam,
    body: { required: true, content: { 'application/json': { schema: pairingCodeBody } } },
  },
  responses: {
    200: json(
      'The live session was joined (`reused: true`), or it is ready.',
      pairingCodeAnswerSchema
    ),
    202: json('A new session was started (`reused: false`).', pairingCodeAnswerSchema),
    ...errors({
      ...CAMPAIGN_ERRORS,
      400: ['invalid_campaign_id', 'invalid_body'],
      413: ['invalid_body'],
      503: ['at_capacity', 'shutting_down', 'store_unavailable', 'node_unavailable'],
    }),
  },
})

const getSettingsRoute = createRoute({
  method: 'get',
  path: '/{campaignId}/settings',
  tags,
  summary: 'The campaign’s settings (its proxy, without credentials)',
  security: bearerSecurity,
  request: { params: campaignIdParam },
  responses: {
    200: json('The settings.', settingsAnswerSchema),
    ...errors(CAMPAIGN_ERRORS),
  },
})

const putSettingsRoute = createRoute({
  method: 'put',
  path: '/{campaignId}/settings',
  tags,
  summary: 'Set the campaign’s proxy, from its next session on',
  description:
    'A live session keeps its connection; the next one (`qr-code` with `force`, a restart) goes through the new proxy. Only for a campaign already started once: its first `qr-code` (or `pairing-code`) may carry `proxy` itself.',
  security: bearerSecurity,
  middleware: [jsonBody],
  request: {
    params: campaignIdParam,
    body: { required: true, content: { 'application/json': { schema: settingsBody } } },
  },
  responses: {
    200: json('The settings, as kept.', settingsAnswerSchema),
    ...errors({
      ...CAMPAIGN_ERRORS,
      400: ['invalid_campaign_id', 'invalid_body'],
      404: ['not_found'],
      413: ['invalid_body'],
    }),
  },
})

const connectionRoute = createRoute({
  method: 'get',
  path: '/{campaignId}/connection',
  tags,
  summary: 'The campaign’s current session, status and history',
  security: bearerSecurity,
  request: { params: campaignIdParam },
  responses: {
    200: json('The campaign’s connection.', connectionSchema),
    ...errors(CAMPAIGN_ERRORS),
  },
})

/** `GET /{campaignId}/qr.png` and `qr.svg`: the current QR as an image. */
function qrImageRoute(extension: QrImageFormat) {
  const mediaType = QR_MEDIA_TYPES[extension]
  return createRoute({
    method: 'get',
    path: `/{campaignId}/qr.${extension}`,
    tags,
    summary: `The current QR as ${extension === 'png' ? 'a PNG' : 'an SVG'} image`,
    description:
      'For clients that cannot hold a WebSocket: poll it while the status is `awaitingScan`. Rendered once per QR (shared with the WebSocket and `qr-code`), never cached by clients.',
    security: bearerSecurity,
    request: { params: campaignIdParam },
    responses: {
      200: qrImage('The QR the campaign’s live session shows now.', mediaType),
      ...errors({ ...CAMPAIGN_ERRORS, 404: ['no_qr'] }),
    },
  })
}

const QR_MEDIA_TYPES = { png: 'image/png', svg: 'image/svg+xml' } as const

/** A newer QR may replace the one being rendered: ask again for the newest, this many times. */
const QR_IMAGE_ATTEMPTS = 3

const cleanupRoute = createRoute({
  method: 'post',
  path: '/{campaignId}/cleanup-session',
  tags,
  summary: 'Tear the session down; answers once its engine is gone',
  description: 'Idempotent. No body needed.',
  security: bearerSecurity,
  request: { params: campaignIdParam },
  responses: {
    200: json('The session is gone (`hadSession: false` if there was none).', cleanupAnswerSchema),
    ...errors({ ...CAMPAIGN_ERRORS, 413: ['invalid_body'] }),
  },
})

const logoutRoute = createRoute({
  method: 'post',
  path: '/{campaignId}/logout',
  tags,
  summary: 'Unlink WhatsApp: log the device out and delete the saved login',
  description:
    'Stops the session (a live one logs the device out of WhatsApp first), deletes the saved login once the browser is gone, and marks the campaign unlinked and stopped: it is not restored, and the next `qr-code` needs a new scan. Ownership stays. Idempotent. No body needed.',
  security: bearerSecurity,
  request: { params: campaignIdParam },
  responses: {
    200: json('The campaign is unlinked.', unlinkAnswerSchema),
    ...errors({ ...CAMPAIGN_ERRORS, 413: ['invalid_body'] }),
  },
})

/** A body's `proxy` (already checked by its schema): settings, null to remove, undefined: absent. */
function proxyOf(text: string | null | undefined): ProxySettings | null | undefined {
  if (text === undefined || text === null) return text
  const parsed = parseProxy(text)
  if (!parsed.ok)
    throw new ApiError(400, 'invalid_body', `Invalid body: "proxy": ${parsed.reason}.`)
  return parsed.proxy
}

/** Answers a refused start request with its error. */
function refuse(result: Exclude<StartResult, { ok: true }>, campaignId: string): never {
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
    case 'store_unavailable':
      throw new ApiError(
        503,
        'store_unavailable',
        'The service could not record the campaign in its store; try again later.',
        { 'Retry-After': String(result.retryAfterSeconds) }
      )
  }
}

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
}: CampaignRoutesOptions): OpenAPIHono<AppEnv> {
  const routes = new OpenAPIHono<AppEnv>({ defaultHook: validationHook() })

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

  routes.openapi(listRoute, (c) => {
    const identity = c.get('identity')
    const { limit, after } = parsePageQuery(c.req.valid('query'))
    const page = sessions.listCampaigns({
      owner: identity.admin ? undefined : identity.userId,
      campaignIds: identity.campaigns ?? undefined,
      limit,
      after,
    })
    return c.json(
      {
        campaigns: page.campaigns.map(connectionJson),
        nextCursor: encodeCursor(page.next),
      },
      200
    )
  })

  routes.use('/:campaignId/*', authorizeCampaign({ sessions }))

  routes.openapi(
    qrCodeRoute,
    async (c) => {
      const campaignId = c.get('campaignId')
      const identity = c.get('identity')
      const body = c.req.valid('json')
      const query = c.req.valid('query').force
      const force = body.force ?? (query === 'true' || query === '1')

      const proxy = proxyOf(body.proxy)
      const result = await sessions.requestSession({
        campaignId,
        caller: toCaller(identity),
        force,
        ...(proxy !== undefined ? { proxy } : {}),
      })
      if (!result.ok) refuse(result, campaignId)
      const { outcome, view } = result
      logger.info(
        {
          campaignId,
          session: sessionTag(view.sessionId),
          outcome,
          force,
          userId: identity.userId,
        },
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
    },
    // `?force=` has always answered `invalid_body`, like the body's `force`.
    validationHook({ query: 'invalid_body' })
  )

  routes.openapi(pairingCodeRoute, async (c) => {
    const campaignId = c.get('campaignId')
    const identity = c.get('identity')
    const body = c.req.valid('json')
    const proxy = proxyOf(body.proxy)
    const result = await sessions.requestSession({
      campaignId,
      caller: toCaller(identity),
      pairWithPhoneNumber: body.phoneNumber,
      ...(proxy !== undefined ? { proxy } : {}),
    })
    if (!result.ok) refuse(result, campaignId)
    const { outcome, view } = result
    // Never the phone number: it is personal data.
    logger.info(
      { campaignId, session: sessionTag(view.sessionId), outcome, userId: identity.userId },
      'Pairing code requested'
    )
    return c.json(
      {
        campaignId,
        sessionId: view.sessionId,
        status: view.status,
        isConnected: view.isConnected,
        pairingCode: pairingCodeJson(view),
        expiresAt: isoTime(view.expiresAt),
        reused: outcome !== 'started',
      },
      outcome === 'started' ? 202 : 200
    )
  })

  for (const extension of ['png', 'svg'] as const) {
    routes.openapi(qrImageRoute(extension), async (c) => {
      const campaignId = c.get('campaignId')
      for (let attempt = 1; attempt <= QR_IMAGE_ATTEMPTS; attempt++) {
        const { sessionId, qr } = sessions.getCampaign(campaignId)
        if (qr === null || sessionId === null) break
        let dataUrl: string
        try {
          dataUrl = await qrImages.imageFor({ sessionId, ...qr }, extension)
        } catch (error) {
          if (error instanceof SupersededQrError) continue
          throw error
        }
        const bytes = Buffer.from(dataUrl.slice(dataUrl.indexOf(',') + 1), 'base64')
        return c.body(bytes, 200, {
          'Content-Type': QR_MEDIA_TYPES[extension],
          'Cache-Control': 'no-store',
        })
      }
      throw new ApiError(404, 'no_qr', `Campaign ${campaignId} shows no QR code now.`)
    })
  }

  routes.openapi(getSettingsRoute, (c) => {
    const campaignId = c.get('campaignId')
    return c.json({ campaignId, proxy: viewOfProxy(sessions.proxyOf(campaignId)) }, 200)
  })

  routes.openapi(putSettingsRoute, (c) => {
    const campaignId = c.get('campaignId')
    const proxy = proxyOf(c.req.valid('json').proxy)
    if (!sessions.setProxy(campaignId, proxy ?? null)) {
      throw new ApiError(
        404,
        'not_found',
        `Campaign ${campaignId} was never started: give its proxy with its first qr-code request ("proxy").`
      )
    }
    // The address only: the credentials are never logged.
    logger.info(
      { campaignId, proxyServer: proxy?.server ?? null, userId: c.get('identity').userId },
      'Campaign proxy set'
    )
    return c.json({ campaignId, proxy: viewOfProxy(proxy ?? null) }, 200)
  })

  routes.openapi(connectionRoute, (c) => {
    return c.json(connectionJson(sessions.getCampaign(c.get('campaignId'))), 200)
  })

  routes.openapi(cleanupRoute, async (c) => {
    const campaignId = c.get('campaignId')
    const result = await sessions.cleanupSession(campaignId)
    logger.info(
      { campaignId, session: sessionTag(result.sessionId), hadSession: result.hadSession },
      'Session cleanup requested'
    )
    return c.json(
      {
        message: 'Session cleaned up successfully',
        campaignId,
        sessionId: result.sessionId,
        hadSession: result.hadSession,
      },
      200
    )
  })

  routes.openapi(logoutRoute, async (c) => {
    const campaignId = c.get('campaignId')
    const result = await sessions.unlinkCampaign(campaignId)
    logger.info(
      {
        campaignId,
        session: sessionTag(result.sessionId),
        hadSession: result.hadSession,
        loginDeleted: result.loginDeleted,
        userId: c.get('identity').userId,
      },
      'WhatsApp unlinked'
    )
    return c.json(
      {
        message: result.loginDeleted
          ? 'WhatsApp unlinked; a new QR code links a phone again'
          : 'The session was stopped, but a new session started meanwhile and keeps the login',
        campaignId,
        sessionId: result.sessionId,
        hadSession: result.hadSession,
        loginDeleted: result.loginDeleted,
      },
      200
    )
  })

  return routes
}
