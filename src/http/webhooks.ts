/**
 * The webhook routes: a campaign's own endpoint (`PUT`, `GET`, `DELETE /campaigns/:id/webhook`,
 * its owner only) and the deliveries (`GET /webhooks/deliveries`, `POST …/:id/retry`: admins see
 * all, owners their campaigns'). Each handler parses, authorizes, calls the webhooks module and
 * shapes the answer.
 *
 * @module
 */
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi'
import { canAccessCampaign } from '../auth/identity.ts'
import type { Logger } from '../logger.ts'
import type { SessionService } from '../session/api.ts'
import {
  DELIVERY_STATUSES,
  SERVICE_ENDPOINT_ID,
  type DeliveryStatus,
} from '../store/webhookOutbox.ts'
import { WebhookUrlError } from '../webhooks/addressPolicy.ts'
import { WEBHOOK_EVENT_TYPES } from '../webhooks/events.ts'
import type { DeliveryView, WebhookEndpointView, Webhooks } from '../webhooks/webhooks.ts'
import { jsonBody } from './body.ts'
import { ApiError } from './errors.ts'
import { authorizeCampaign, type AppEnv } from './middleware.ts'
import { encodeCursor, parsePageQuery } from './paging.ts'
import {
  bearerSecurity,
  CAMPAIGN_ERRORS,
  campaignIdParam,
  errors,
  json,
  validationHook,
} from './schemas.ts'

export interface WebhookRoutesOptions {
  webhooks: Pick<
    Webhooks,
    | 'setCampaignEndpoint'
    | 'getCampaignEndpoint'
    | 'removeCampaignEndpoint'
    | 'listDeliveries'
    | 'getDelivery'
    | 'retryDelivery'
  >
  sessions: Pick<SessionService, 'ownerOf'>
  logger: Logger
}

const tags = ['webhooks']
const epochIso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())
const isoTime = z.iso.datetime()

const endpointFields = {
  endpointId: z.string(),
  campaignId: z.string(),
  url: z.string(),
  events: z.array(z.enum(WEBHOOK_EVENT_TYPES as [string, ...string[]])),
  createdAt: isoTime,
  disabledAt: isoTime.nullable(),
  disabledReason: z.string().nullable().openapi({
    description: 'Why the endpoint was disabled (a `410 Gone`); set it again to enable it.',
  }),
}

const endpointSchema = z.strictObject(endpointFields).openapi('WebhookEndpoint')

const endpointSetSchema = z
  .strictObject({
    ...endpointFields,
    secret: z.string().openapi({
      description:
        'The endpoint’s signing secret (`whsec_…`, Standard Webhooks). Shown in this answer only: no later read returns it.',
    }),
  })
  .openapi('WebhookEndpointSet')

const endpointBody = z
  .strictObject({
    url: z.string().max(2048).openapi({ example: 'https://backend.example.com/qrvisor' }),
    events: z
      .array(z.enum(WEBHOOK_EVENT_TYPES as [string, ...string[]]))
      .max(WEBHOOK_EVENT_TYPES.length * 2)
      .optional()
      .openapi({
        description:
          '`session.status` (the default) and/or `session.qr`. `session.qr` carries the raw QR text, a login capability: ask for it only for a receiver you trust as much as the service.',
      }),
  })
  .openapi('WebhookEndpointRequest')

const deliverySchema = z
  .strictObject({
    deliveryId: z.string().openapi({ description: 'Also the `webhook-id` header.' }),
    endpointId: z.string(),
    campaignId: z.string(),
    type: z.string(),
    status: z.enum(DELIVERY_STATUSES as [DeliveryStatus, ...DeliveryStatus[]]),
    attempts: z.int(),
    lastError: z.string().nullable(),
    nextAttemptAt: isoTime.nullable().openapi({ description: 'While pending; null otherwise.' }),
    createdAt: isoTime,
    updatedAt: isoTime,
    deliveredAt: isoTime.nullable(),
  })
  .openapi('WebhookDelivery')

const deliveryListQuery = z.object({
  status: z
    .enum(DELIVERY_STATUSES as [DeliveryStatus, ...DeliveryStatus[]], {
      error: `The query parameter status must be one of ${DELIVERY_STATUSES.join(', ')}.`,
    })
    .optional(),
  campaignId: z.string().max(64).optional(),
  limit: z
    .string()
    .optional()
    .openapi({ param: { description: 'Deliveries per page, 1 to 1000.' } }),
  cursor: z
    .string()
    .optional()
    .openapi({ param: { description: 'The `nextCursor` of the previous page, as is.' } }),
})

// Any text: an id the outbox never gave is not there (404), whatever it looks like.
const deliveryIdParam = z.object({
  deliveryId: z
    .string()
    .openapi({ param: { name: 'deliveryId', in: 'path' }, example: 'msg_2b6f…' }),
})

const setRoute = createRoute({
  method: 'put',
  path: '/campaigns/{campaignId}/webhook',
  tags,
  summary: 'Set the campaign’s webhook endpoint (its secret is shown once)',
  description:
    'Replaces the campaign’s endpoint if it has one (with a new secret; what was pending for the old one is cancelled). The URL must resolve to public addresses (unless `WEBHOOK_ALLOW_PRIVATE=true`).',
  security: bearerSecurity,
  middleware: [jsonBody],
  request: {
    params: campaignIdParam,
    body: { required: true, content: { 'application/json': { schema: endpointBody } } },
  },
  responses: {
    200: json('The endpoint, with its secret (this once).', endpointSetSchema),
    ...errors({
      ...CAMPAIGN_ERRORS,
      400: ['invalid_campaign_id', 'invalid_body', 'invalid_webhook_url'],
      404: ['not_found'],
      413: ['invalid_body'],
    }),
  },
})

const getRoute = createRoute({
  method: 'get',
  path: '/campaigns/{campaignId}/webhook',
  tags,
  summary: 'The campaign’s webhook endpoint (without its secret)',
  security: bearerSecurity,
  request: { params: campaignIdParam },
  responses: {
    200: json('The endpoint.', endpointSchema),
    ...errors({ ...CAMPAIGN_ERRORS, 404: ['not_found'] }),
  },
})

const removeRoute = createRoute({
  method: 'delete',
  path: '/campaigns/{campaignId}/webhook',
  tags,
  summary: 'Remove the campaign’s webhook endpoint',
  description: 'What was pending for it is cancelled. Idempotent.',
  security: bearerSecurity,
  request: { params: campaignIdParam },
  responses: {
    200: json(
      'Removed (`removed: false` if there was none).',
      z.strictObject({ campaignId: z.string(), removed: z.boolean() }).openapi('WebhookRemoved')
    ),
    ...errors({ ...CAMPAIGN_ERRORS, 413: ['invalid_body'] }),
  },
})

const listRoute = createRoute({
  method: 'get',
  path: '/webhooks/deliveries',
  tags,
  summary: 'Webhook deliveries, newest first',
  description:
    'Admins see every delivery; others the deliveries to their campaigns’ endpoints. Bodies are never listed (a `session.qr` body is a login capability).',
  security: bearerSecurity,
  request: { query: deliveryListQuery },
  responses: {
    200: json(
      'A page of deliveries.',
      z
        .strictObject({
          deliveries: z.array(deliverySchema),
          nextCursor: z.string().nullable().openapi({ description: 'null on the last page.' }),
        })
        .openapi('WebhookDeliveryList')
    ),
    ...errors({ 400: ['invalid_query'], 401: ['unauthorized'], 403: ['forbidden'] }),
  },
})

const retryRoute = createRoute({
  method: 'post',
  path: '/webhooks/deliveries/{deliveryId}/retry',
  tags,
  summary: 'Send a failed or cancelled delivery again',
  description: 'From attempt 0, while its endpoint exists and is enabled.',
  security: bearerSecurity,
  request: { params: deliveryIdParam },
  responses: {
    200: json('Queued again.', deliverySchema),
    ...errors({
      401: ['unauthorized'],
      404: ['not_found'],
      409: ['nothing_to_do'],
      413: ['invalid_body'],
    }),
  },
})

/**
 * The webhook routes, to be mounted at `/api` behind bearer authentication.
 *
 * @example
 * api.route('/', createWebhookRoutes({ webhooks, sessions, logger }))
 */
export function createWebhookRoutes({
  webhooks,
  sessions,
  logger,
}: WebhookRoutesOptions): OpenAPIHono<AppEnv> {
  const routes = new OpenAPIHono<AppEnv>({ defaultHook: validationHook() })
  routes.use('/campaigns/:campaignId/webhook', authorizeCampaign({ sessions }))

  routes.openapi(setRoute, async (c) => {
    const campaignId = c.get('campaignId')
    if (sessions.ownerOf(campaignId) === undefined) {
      throw new ApiError(
        404,
        'not_found',
        `Campaign ${campaignId} has no owner yet: request its QR code first.`
      )
    }
    const { url, events } = c.req.valid('json')
    let result: Awaited<ReturnType<Webhooks['setCampaignEndpoint']>>
    try {
      result = await webhooks.setCampaignEndpoint(campaignId, {
        url,
        ...(events ? { events } : {}),
      })
    } catch (error) {
      if (error instanceof WebhookUrlError) {
        throw new ApiError(400, 'invalid_webhook_url', error.message)
      }
      throw error
    }
    logger.info(
      { campaignId, endpointId: result.endpoint.endpointId, userId: c.get('identity').userId },
      'Webhook endpoint set'
    )
    return c.json({ ...endpointJson(result.endpoint), secret: result.secret }, 200)
  })

  routes.openapi(getRoute, async (c) => {
    const campaignId = c.get('campaignId')
    const endpoint = await webhooks.getCampaignEndpoint(campaignId)
    if (!endpoint) {
      throw new ApiError(404, 'not_found', `Campaign ${campaignId} has no webhook endpoint.`)
    }
    return c.json(endpointJson(endpoint), 200)
  })

  routes.openapi(removeRoute, async (c) => {
    const campaignId = c.get('campaignId')
    const removed = await webhooks.removeCampaignEndpoint(campaignId)
    if (removed) logger.info({ campaignId }, 'Webhook endpoint removed')
    return c.json({ campaignId, removed }, 200)
  })

  routes.openapi(listRoute, async (c) => {
    const identity = c.get('identity')
    const { status, campaignId, limit: limitText, cursor } = c.req.valid('query')
    const { limit, after: before } = parsePageQuery({ limit: limitText, cursor })
    if (
      campaignId !== undefined &&
      !canAccessCampaign(identity, campaignId, sessions.ownerOf(campaignId))
    ) {
      throw new ApiError(403, 'forbidden', `You may not act on campaign ${campaignId}.`)
    }
    const deliveries = await webhooks.listDeliveries({
      ...(identity.admin ? {} : { owner: identity.userId }),
      ...(campaignId !== undefined ? { campaignId } : {}),
      ...(status !== undefined ? { status } : {}),
      ...(before !== undefined ? { before } : {}),
      limit,
    })
    const visible = deliveries.filter(
      (delivery) => identity.campaigns === null || identity.campaigns.has(delivery.campaignId)
    )
    const last = deliveries.at(-1)
    return c.json(
      {
        deliveries: visible.map(deliveryJson),
        nextCursor: deliveries.length === limit && last ? encodeCursor(last.cursor) : null,
      },
      200
    )
  })

  routes.openapi(retryRoute, async (c) => {
    const identity = c.get('identity')
    const { deliveryId } = c.req.valid('param')
    const delivery = await webhooks.getDelivery(deliveryId)
    // Another user's delivery, or (but to an admin) one to the service-wide endpoint, is not
    // there for them: 404, as the listing does not show it either.
    const owner = delivery && sessions.ownerOf(delivery.campaignId)
    const visible =
      delivery !== undefined &&
      canAccessCampaign(identity, delivery.campaignId, owner) &&
      (identity.admin || (delivery.endpointId !== SERVICE_ENDPOINT_ID && owner === identity.userId))
    if (!delivery || !visible) {
      throw new ApiError(404, 'not_found', `There is no delivery ${deliveryId}.`)
    }
    if (!(await webhooks.retryDelivery(deliveryId))) {
      throw new ApiError(
        409,
        'nothing_to_do',
        `Delivery ${deliveryId} is ${delivery.status}: only a failed or cancelled delivery to an enabled endpoint can be retried.`
      )
    }
    logger.info({ deliveryId, campaignId: delivery.campaignId }, 'Webhook delivery retried')
    return c.json(deliveryJson((await webhooks.getDelivery(deliveryId)) ?? delivery), 200)
  })

  return routes
}

function endpointJson(endpoint: WebhookEndpointView) {
  return {
    endpointId: endpoint.endpointId,
    campaignId: endpoint.campaignId ?? '',
    url: endpoint.url,
    events: endpoint.events,
    createdAt: epochIso(endpoint.createdAt)!,
    disabledAt: epochIso(endpoint.disabledAt),
    disabledReason: endpoint.disabledReason,
  }
}

function deliveryJson(delivery: DeliveryView) {
  return {
    deliveryId: delivery.deliveryId,
    endpointId: delivery.endpointId,
    campaignId: delivery.campaignId,
    type: delivery.type,
    status: delivery.status,
    attempts: delivery.attempts,
    lastError: delivery.lastError,
    nextAttemptAt: delivery.status === 'pending' ? epochIso(delivery.nextAttemptAt) : null,
    createdAt: epochIso(delivery.createdAt)!,
    updatedAt: epochIso(delivery.updatedAt)!,
    deliveredAt: epochIso(delivery.deliveredAt),
  }
}
