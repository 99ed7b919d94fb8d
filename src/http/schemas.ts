/**
 * The API's shapes as zod schemas: what the routes validate (params, query, bodies) and what they
 * answer. `@hono/zod-openapi` turns them into the OpenAPI document served at `/openapi.json`, and
 * the edge tests check every real answer against that document.
 *
 * @module
 */
import { z } from '@hono/zod-openapi'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { ErrorCode } from '../errors.ts'
import { CAMPAIGN_ID_PATTERN, SESSION_STATUSES, type SessionReason } from '../session/api.ts'
import { parseProxy } from '../proxy.ts'
import { ApiError } from './errors.ts'
import { CAMPAIGN_ID_MESSAGE } from './middleware.ts'
import { LIMIT_MESSAGE } from './paging.ts'

/** The security scheme every `/api` route requires (`Authorization: Bearer <JWT>`). */
export const BEARER = 'bearer'
export const bearerSecurity = [{ [BEARER]: [] }]

const SESSION_REASONS = [
  'init_timeout',
  'scan_timeout',
  'auth_timeout',
  'engine_failed',
  'logged_out',
  'unresponsive',
  'node_lost',
  'cleanup_requested',
  'unlinked',
  'replaced',
  'shutdown',
] as const satisfies readonly SessionReason[]
// Every reason is listed: a reason added to the type without its schema fails to compile here.
const everyReason: readonly (typeof SESSION_REASONS)[number][] = [] as SessionReason[]
void everyReason

const ERROR_CODES = [
  'unauthorized',
  'forbidden',
  'origin_not_allowed',
  'invalid_campaign_id',
  'invalid_body',
  'invalid_query',
  'invalid_webhook_url',
  'not_found',
  'no_qr',
  'method_not_allowed',
  'nothing_to_do',
  'at_capacity',
  'shutting_down',
  'store_unavailable',
  'node_unavailable',
  'internal',
] as const satisfies readonly ErrorCode[]
const everyCode: readonly (typeof ERROR_CODES)[number][] = [] as ErrorCode[]
void everyCode

export const errorSchema = z
  .strictObject({
    error: z.strictObject({
      code: z.enum(ERROR_CODES).openapi({ description: 'Stable, for programs.' }),
      message: z.string().openapi({ description: 'A sentence for people.' }),
    }),
  })
  .openapi('Error', {
    example: { error: { code: 'forbidden', message: 'You may not act on campaign spring-sale.' } },
  })

const sessionStatus = z.enum(SESSION_STATUSES).openapi('SessionStatus')
// Not a named component: zod-to-openapi would make the component nullable for every use.
const sessionReason = z.enum(SESSION_REASONS).openapi({
  description:
    'Why a session left its happy path; the last four say who ended a session that did not fail.',
})
const isoTime = z.iso.datetime()
const sessionId = z.string().openapi({ description: 'A capability: never logged.' })

export const campaignIdParam = z.object({
  campaignId: z
    .string()
    .regex(CAMPAIGN_ID_PATTERN, { error: CAMPAIGN_ID_MESSAGE })
    .openapi({ param: { name: 'campaignId', in: 'path' }, example: 'spring-sale' }),
})

/**
 * A proxy URL in a body: checked here (`parseProxy`), parsed again by the handler. The reason of a
 * refusal never repeats the URL, which may hold a password.
 */
const proxyField = z
  .string()
  .max(2048)
  .superRefine((text, context) => {
    const parsed = parseProxy(text)
    if (!parsed.ok) context.addIssue({ code: 'custom', message: parsed.reason })
  })
  .nullable()
  .openapi({
    description:
      'The campaign’s proxy from now on: `http://`, `https://` or `socks5://`, with optional credentials (not with `socks5://`); `null` removes it. Never answered back with its credentials.',
    example: 'http://user:secret@proxy.example:3128',
  })

const pairingCodeSchema = z
  .strictObject({
    code: z
      .string()
      .openapi({ description: 'Type it on the phone (8 characters).', example: 'K7QM2XRT' }),
    expiresAt: isoTime.openapi({
      description: 'The scan deadline: from the first code, renewals do not move it.',
    }),
  })
  // Not a named component, for the same reason as `sessionReason`: it is nullable in one use.
  .openapi({ description: 'A pairing code to type on the phone.' })

/** International format, digits only: country code first, no `+`, no spaces (E.164: 8 to 15). */
export const PHONE_NUMBER_PATTERN = /^[1-9][0-9]{7,14}$/

export const pairingCodeBody = z
  .strictObject({
    phoneNumber: z
      .string({ error: 'must be a string of digits' })
      .regex(PHONE_NUMBER_PATTERN, {
        error:
          'must be the phone number in international format, digits only: the country code first, without "+", spaces or a leading 0 (e.g. 447911123456)',
      })
      .openapi({ example: '447911123456' }),
    proxy: proxyField.optional(),
  })
  .openapi('PairingCodeRequest')

export const pairingCodeAnswerSchema = z
  .strictObject({
    campaignId: z.string(),
    sessionId: sessionId.nullable(),
    status: sessionStatus,
    isConnected: z.boolean(),
    pairingCode: pairingCodeSchema.nullable().openapi({
      description:
        'The code shown now; null until WhatsApp gives one (it comes over the WebSocket as `pairing_code`).',
    }),
    expiresAt: isoTime.nullable(),
    reused: z.boolean(),
  })
  .openapi('PairingCodeAnswer')

export const connectionSchema = z
  .strictObject({
    campaignId: z.string(),
    isConnected: z.boolean(),
    lastActivity: isoTime.nullable(),
    hasActiveSession: z.boolean(),
    sessionId: sessionId.nullable(),
    status: sessionStatus,
    reason: sessionReason.nullable(),
    detail: z.string().nullable().openapi({
      description:
        'Why a session that is no longer active ended, in the engine’s words with a hint when the cause is known; null otherwise.',
    }),
    expiresAt: isoTime.nullable(),
    lastSeenAlive: isoTime.nullable().openapi({
      description:
        'When WhatsApp was last known connected: at ready, then at each liveness probe it answered; kept after the session ended; null if it never was ready.',
    }),
    node: z.string().nullable().openapi({
      description:
        'In a cluster, the node (`NODE_ID`) that runs the session, or ran it when known; null outside a cluster and for a session remembered from before a restart.',
    }),
    history: z.array(
      z.strictObject({
        status: sessionStatus,
        at: isoTime,
        reason: sessionReason.optional(),
        detail: z.string().optional(),
      })
    ),
    pairingCode: pairingCodeSchema.optional().openapi({
      description: 'Only while the session, linking with a phone number, shows a code.',
    }),
  })
  .openapi('Connection')

export const campaignListQuery = z.object({
  limit: z
    .string()
    .regex(/^[0-9]{1,4}$/, { error: LIMIT_MESSAGE })
    .optional()
    .openapi({
      param: { description: 'Campaigns per page, 1 to 1000.' },
      example: '100',
      default: '100',
    }),
  cursor: z
    .string()
    .optional()
    .openapi({ param: { description: 'The `nextCursor` of the previous page, as is.' } }),
})

export const campaignListSchema = z
  .strictObject({
    campaigns: z.array(connectionSchema),
    nextCursor: z.string().nullable().openapi({ description: 'null on the last page.' }),
  })
  .openapi('CampaignList')

export const qrCodeQuery = z.object({
  force: z
    .enum(['true', 'false', '1', '0'], {
      error: 'The query parameter force must be true, false, 1 or 0.',
    })
    .optional()
    .openapi({
      param: { description: 'Replace the live session by a new one (the body’s `force` wins).' },
    }),
})

export const qrCodeBody = z
  .strictObject({ force: z.boolean().optional(), proxy: proxyField.optional() })
  .openapi('QrCodeRequest', { description: 'Optional: an empty body counts as `{}`.' })

export const qrCodeAnswerSchema = z
  .strictObject({
    campaignId: z.string(),
    sessionId: sessionId.nullable(),
    status: sessionStatus,
    isConnected: z.boolean(),
    qrCode: z.string().nullable().openapi({
      description:
        'The current QR as a data URL (PNG, or SVG with QR_IMAGE=svg); null when none is shown.',
    }),
    expiresAt: isoTime.nullable(),
    reused: z.boolean(),
  })
  .openapi('QrCodeAnswer')

/** A QR image answer (`qr.png`, `qr.svg`): the bytes of the image. */
export function qrImage(description: string, mediaType: 'image/png' | 'image/svg+xml') {
  return {
    description,
    headers: {
      'Cache-Control': {
        description: '`no-store`: the QR changes.',
        schema: { type: 'string' as const },
      },
    },
    content: { [mediaType]: { schema: z.string().openapi({ format: 'binary' }) } },
  }
}

export const settingsBody = z.strictObject({ proxy: proxyField }).openapi('CampaignSettingsRequest')

export const settingsAnswerSchema = z
  .strictObject({
    campaignId: z.string(),
    proxy: z
      .strictObject({
        server: z.string().openapi({ example: 'http://proxy.example:3128' }),
        hasCredentials: z.boolean(),
      })
      .nullable()
      .openapi({
        description:
          'The campaign’s own proxy, without its credentials; null when it has none (`WA_PROXY` then applies, if set).',
      }),
  })
  .openapi('CampaignSettings')

export const cleanupAnswerSchema = z
  .strictObject({
    message: z.string(),
    campaignId: z.string(),
    sessionId: sessionId.nullable(),
    hadSession: z.boolean(),
  })
  .openapi('CleanupAnswer')

export const unlinkAnswerSchema = z
  .strictObject({
    message: z.string(),
    campaignId: z.string(),
    sessionId: sessionId.nullable(),
    hadSession: z.boolean(),
    loginDeleted: z.boolean().openapi({
      description:
        'The saved WhatsApp login was deleted (false only if a new session of the campaign started meanwhile and runs on it).',
    }),
  })
  .openapi('UnlinkAnswer')

export const simulatorActionSchema = z
  .strictObject({ campaignId: z.string(), sessionId: sessionId.nullable(), message: z.string() })
  .openapi('SimulatorActionAnswer')

export const enterPairingCodeBody = z
  .strictObject({ code: z.string().max(16).openapi({ example: 'K7QM2XRT' }) })
  .openapi('EnterPairingCode')

export const behaviourBody = z
  .strictObject({
    startup: z.enum(['qr', 'hang', 'error', 'restored']).optional(),
    teardown: z.enum(['normal', 'hang']).optional(),
    liveness: z.enum(['healthy', 'hang', 'disconnected']).optional().openapi({
      description:
        'How the liveness probe finds the campaign’s sessions, the running one included: `hang` never answers, `disconnected` answers a state other than CONNECTED.',
    }),
  })
  .refine(
    (body) =>
      body.startup !== undefined || body.teardown !== undefined || body.liveness !== undefined,
    { error: 'give "startup", "teardown" and/or "liveness"' }
  )
  .openapi('SimulatedBehaviour')

export const behaviourAnswerSchema = z
  .strictObject({ campaignId: z.string(), behaviour: behaviourBody })
  .openapi('SimulatedBehaviourAnswer')

/**
 * A JSON answer with `schema`. Answers are strict objects (`additionalProperties: false`): a
 * field the document does not name is a change of shape, and the edge tests fail on it.
 */
export function json<Schema extends z.ZodType>(description: string, schema: Schema) {
  return { description, content: { 'application/json': { schema } } }
}

/** What each error status means, for the document. */
const ERROR_MEANINGS: Record<number, string> = {
  400: 'Bad input',
  401: 'No token, or a token that does not verify (`WWW-Authenticate: Bearer`)',
  403: 'Another user’s campaign, or outside the token’s `campaigns` claim',
  404: 'Not found',
  409: 'Nothing to do',
  413: 'A body over the size limit (`Connection: close`)',
  500: 'A bug on the service’s side',
  503: 'Not now (`Retry-After` says when to try again)',
}

/**
 * The error answers of a route, in the error shape, each with the codes it may carry.
 *
 * @example
 * responses: { 200: json('The campaign', connectionSchema), ...errors({ 400: ['invalid_campaign_id'] }) }
 */
export function errors(codes: Partial<Record<ContentfulStatusCode, ErrorCode[]>>) {
  const answers: Record<number, ReturnType<typeof json>> = {}
  for (const [status, list] of Object.entries(codes)) {
    const meaning = ERROR_MEANINGS[Number(status)] ?? 'Error'
    answers[Number(status)] = json(
      `${meaning}: ${list.map((code) => `\`${code}\``).join(', ')}.`,
      errorSchema
    )
  }
  return answers
}

/** The errors every authenticated route may answer. */
export const AUTH_ERRORS = { 401: ['unauthorized'], 500: ['internal'] } as const satisfies Partial<
  Record<ContentfulStatusCode, ErrorCode[]>
>

/**
 * … and those of a route on one campaign (`/:campaignId/…`). In a cluster such a request is
 * forwarded to the node running the campaign, which may not answer (`node_unavailable`).
 */
export const CAMPAIGN_ERRORS = {
  ...AUTH_ERRORS,
  400: ['invalid_campaign_id'],
  403: ['forbidden'],
  503: ['node_unavailable'],
} as const satisfies Partial<Record<ContentfulStatusCode, ErrorCode[]>>

/** What `@hono/zod-openapi` tells a validation hook. */
type ValidationResult = { target: string } & (
  { success: true } | { success: false; error: z.ZodError }
)

/**
 * Turns a failed zod validation into the project's own 400: `invalid_body` for a body (`Invalid
 * body: "<field>": <what>.`), `invalid_query` for a query parameter, `invalid_campaign_id` for the
 * id; the query and path schemas carry the sentence to answer. `codes` overrides the code of a
 * target (the `?force=` of `qr-code` answers `invalid_body`).
 *
 * @example
 * new OpenAPIHono<AppEnv>({ defaultHook: validationHook() })
 */
export function validationHook(
  codes: Partial<Record<'json' | 'query' | 'param', ErrorCode>> = {}
): (result: ValidationResult) => undefined {
  return (result) => {
    if (result.success) return
    const issue = result.error.issues[0]
    if (result.target === 'json') {
      const where = issue && issue.path.length > 0 ? `"${issue.path.join('.')}": ` : ''
      const message = `Invalid body: ${where}${issue?.message ?? 'invalid'}.`
      throw new ApiError(400, codes.json ?? 'invalid_body', message)
    }
    const code =
      codes[result.target as 'query' | 'param'] ??
      (result.target === 'param' ? 'invalid_campaign_id' : 'invalid_query')
    throw new ApiError(400, code, issue?.message ?? 'Invalid request.')
  }
}
