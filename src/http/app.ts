/**
 * The HTTP application: a Hono app built from its dependencies. Routes: the campaign API, the
 * simulator controls (only when a simulator is given), `/healthz`, `/readyz` and `/metrics`, plus
 * any extra routes (the pages `/` and `/inspect` of `src/web`).
 *
 * @module
 */
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi'
import type { Hono, MiddlewareHandler } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { cors } from 'hono/cors'
import type { TokenVerifier } from '../auth/verifier.ts'
import { silentLogger, type Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import type { QrImageRenderer } from '../qr/renderer.ts'
import type { SessionService } from '../session/api.ts'
import { createCampaignRoutes } from './campaigns.ts'
import { ApiError, sendError } from './errors.ts'
import { answerMethodNotAllowed } from './methodNotAllowed.ts'
import { requireBearerToken, type AppEnv } from './middleware.ts'
import { BEARER, errors, json, validationHook } from './schemas.ts'
import { createSimulatorRoutes, type SimulatorControls } from './simulator.ts'
import { createWebhookRoutes, type WebhookRoutesOptions } from './webhooks.ts'

export interface ClusterReadiness {
  node: string
  database: 'ok' | 'unreachable'
  /** Campaign leases this node holds. */
  leases: number
  draining: boolean
  /** Live nodes in the cluster, this one included. */
  nodes: number
}

export interface AppOptions {
  sessions: SessionService
  verifier: TokenVerifier
  qrImages: QrImageRenderer
  metrics: Metrics
  /** The simulated engine's controls; the `/api/simulator` routes exist only when given. */
  simulator?: SimulatorControls
  logger?: Logger
  /** The webhooks (with a durable store): their routes exist only then. */
  webhooks?: WebhookRoutesOptions['webhooks']
  /** False while the process starts or shuts down: `/readyz` answers 503. */
  isReady?: () => boolean
  /**
   * Runs before every campaign route, after the caller's token is verified (a cluster node
   * forwards a campaign's requests to the node running it).
   */
  campaignMiddleware?: MiddlewareHandler
  /** A cluster node's state for `/readyz`: not ready while its database is unreachable. */
  clusterStatus?: () => Promise<ClusterReadiness>
  /**
   * `CORS_ORIGINS`: origins whose pages may call `/api` from a browser (none by default: only
   * the service's own pages, which need no CORS).
   */
  corsOrigins?: string[]
  /** Largest accepted request body, in bytes. */
  maxBodyBytes?: number
  /** How long an answer waits for a QR image before it says `qrCode: null`. */
  qrImageWaitMs?: number
  /**
   * Routes mounted at `/` after the API, e.g. the pages of `src/web` (`createWebRoutes()`).
   * They bring their own authentication.
   */
  extraRoutes?: Hono[]
}

/**
 * Builds the application. It does not listen: `src/server.ts` serves it, tests call
 * `app.request()` or serve it on port 0.
 *
 * @example
 * const app = createApp({ sessions, verifier, qrImages, metrics })
 * const res = await app.request('/api/campaigns/spring-sale/connection', { headers: { Authorization: `Bearer ${token}` } })
 */
export function createApp({
  sessions,
  verifier,
  qrImages,
  metrics,
  simulator,
  webhooks,
  logger = silentLogger,
  isReady = () => true,
  campaignMiddleware,
  clusterStatus,
  corsOrigins = [],
  maxBodyBytes = 4096,
  qrImageWaitMs,
  extraRoutes = [],
}: AppOptions): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook() })

  app.openapi(healthRoute, (c) => c.json({ status: 'ok' as const }, 200))
  app.openapi(readyRoute, async (c) => {
    const { accepting, restore } = sessions.stats()
    const cluster = clusterStatus ? await clusterStatus() : undefined
    if (cluster?.database === 'unreachable') {
      throw new ApiError(
        503,
        'store_unavailable',
        `Node ${cluster.node} cannot reach the cluster's database; its sessions are being fenced.`,
        { 'Retry-After': '5' }
      )
    }
    if (isReady() && accepting && !cluster?.draining) {
      return c.json(
        {
          status: 'ready' as const,
          ...(restore ? { restore } : {}),
          ...(cluster ? { cluster } : {}),
        },
        200
      )
    }
    throw new ApiError(503, 'shutting_down', 'The service does not accept new sessions now.', {
      'Retry-After': '5',
    })
  })
  app.openapi(metricsRoute, async (c) =>
    c.text(await metrics.render(), 200, { 'Content-Type': metrics.contentType })
  )

  const api = new OpenAPIHono<AppEnv>({ defaultHook: validationHook() })
  // First, so that preflights (which carry no token) are answered, and so that every answer,
  // errors included, carries the headers a frontend needs to read it.
  if (corsOrigins.length > 0) api.use(apiCors(corsOrigins))
  // Only on methods with a body: reading `body` of a GET makes node-server build a full Request,
  // which costs more than everything else a status request does.
  const limitBody = bodyLimit({
    maxSize: maxBodyBytes,
    // The unread rest of the body would be left on the connection: close it, and say so, or a
    // client's keep-alive pool reuses a connection the server is about to drop.
    onError: (c) =>
      sendError(c, 413, 'invalid_body', `The request body is larger than ${maxBodyBytes} bytes.`, {
        Connection: 'close',
      }),
  })
  api.on(['POST', 'PUT', 'PATCH', 'DELETE'], '*', limitBody)
  api.use(requireBearerToken({ verifier }))
  if (campaignMiddleware) {
    api.use('/campaigns/:id/*', campaignMiddleware)
    api.use('/simulator/campaigns/:id/*', campaignMiddleware)
  }
  api.route('/campaigns', createCampaignRoutes({ sessions, qrImages, logger, qrImageWaitMs }))
  if (webhooks) api.route('/', createWebhookRoutes({ webhooks, sessions, logger }))
  if (simulator) {
    api.route('/simulator/campaigns', createSimulatorRoutes({ simulator, sessions, logger }))
  }
  app.route('/api', api)

  app.openAPIRegistry.registerComponent('securitySchemes', BEARER, {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: 'A JWT as `npm run token` makes one; see docs/api.md, "Identity and access".',
  })
  let document: unknown
  app.get('/openapi.json', (c) => {
    document ??= app.getOpenAPI31Document(DOCUMENT_INFO)
    return c.json(document)
  })

  for (const routes of extraRoutes) app.route('/', routes)
  answerMethodNotAllowed(app)

  app.notFound((c) => sendError(c, 404, 'not_found', `There is no ${c.req.method} ${c.req.path}.`))
  app.onError((error, c) => {
    if (error instanceof ApiError) {
      return sendError(c, error.status, error.code, error.message, error.headers)
    }
    logger.error({ err: error, method: c.req.method, path: c.req.path }, 'Request failed')
    return sendError(c, 500, 'internal', 'Something went wrong on our side.')
  })
  return app
}

const DOCUMENT_INFO = {
  openapi: '3.1.0',
  info: {
    title: 'qrvisor HTTP API',
    version: '0.1.0',
    description:
      'Link WhatsApp Web sessions per campaign. The WebSocket protocol (`/ws/campaigns`) and the ' +
      'prose are in docs/api.md. Every error answers `{ "error": { "code", "message" } }`; a ' +
      'known path asked with another method answers 405 `method_not_allowed` with `Allow`, an ' +
      'unknown path 404 `not_found`, and every route answers `HEAD` where it answers `GET`.',
  },
}

const probeTags = ['probes']

const healthRoute = createRoute({
  method: 'get',
  path: '/healthz',
  tags: probeTags,
  summary: 'Liveness: 200 while the process runs',
  responses: { 200: json('Alive.', z.strictObject({ status: z.literal('ok') })) },
})

const readyRoute = createRoute({
  method: 'get',
  path: '/readyz',
  tags: probeTags,
  summary: 'Readiness: 200 while new sessions are accepted',
  responses: {
    200: json(
      'Accepting sessions (also while linked campaigns are being restored).',
      z.strictObject({
        status: z.literal('ready'),
        restore: z
          .strictObject({
            total: z.int(),
            started: z.int(),
            pending: z.int(),
            inFlight: z.int(),
            abandoned: z.int(),
            done: z.boolean(),
          })
          .optional()
          .openapi({
            description:
              'With a durable store: the restore of the campaigns that were linked and wanted running at start.',
          }),
        cluster: z
          .strictObject({
            node: z.string(),
            database: z.enum(['ok', 'unreachable']),
            leases: z.int(),
            draining: z.boolean(),
            nodes: z.int(),
          })
          .optional()
          .openapi({
            description:
              'On PostgreSQL (a cluster): this node, its database, the campaign leases it holds and the live nodes.',
          }),
      })
    ),
    ...errors({ 503: ['shutting_down', 'store_unavailable'] }),
  },
})

const metricsRoute = createRoute({
  method: 'get',
  path: '/metrics',
  tags: probeTags,
  summary: 'Prometheus metrics (text format)',
  responses: {
    200: {
      description: 'The metrics; docs/api.md lists them.',
      content: { 'text/plain': { schema: z.string() } },
    },
  },
})

/** How long a browser may cache a preflight's answer: 10 minutes (Chromium caps it at 2 hours). */
const PREFLIGHT_MAX_AGE_SECONDS = 600

/**
 * CORS for the API, with Hono's own middleware: exact origins only, the methods and request
 * headers the API uses, and the response headers a frontend reads (`Retry-After` of a 503,
 * `WWW-Authenticate` of a 401). No credentials mode: the API authenticates with a bearer token,
 * never with cookies.
 */
function apiCors(origins: string[]) {
  return cors({
    origin: origins,
    allowMethods: ['GET', 'POST', 'PUT', 'DELETE'],
    allowHeaders: ['Authorization', 'Content-Type'],
    exposeHeaders: ['Retry-After', 'WWW-Authenticate'],
    maxAge: PREFLIGHT_MAX_AGE_SECONDS,
  })
}
