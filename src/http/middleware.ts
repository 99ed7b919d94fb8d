/**
 * The API's middleware factories: bearer authentication, campaign id validation and campaign
 * access. Each sets what the next needs on the context (`identity`, `campaignId`).
 *
 * @module
 */
import type { MiddlewareHandler } from 'hono'
import { bearerToken } from '../auth/bearer.ts'
import { canAccessCampaign, type Identity } from '../auth/identity.ts'
import { InvalidTokenError, type TokenVerifier } from '../auth/verifier.ts'
import { CAMPAIGN_ID_PATTERN, type SessionService } from '../session/api.ts'
import { ApiError } from './errors.ts'

export interface AppEnv {
  Variables: {
    identity: Identity
    campaignId: string
  }
}

export const CAMPAIGN_ID_MESSAGE = 'A campaign id is 1 to 64 letters, digits, "_" or "-".'

/**
 * Requires `Authorization: Bearer <JWT>` and sets `identity`. Anything else is 401 with
 * `WWW-Authenticate: Bearer`. The token itself is never logged or echoed.
 */
export const requireBearerToken = ({
  verifier,
}: {
  verifier: TokenVerifier
}): MiddlewareHandler<AppEnv> =>
  async function requireBearerToken(c, next) {
    const token = bearerToken(c.req.header('authorization'))
    if (token === null) {
      throw new ApiError(
        401,
        'unauthorized',
        'A bearer token is required (Authorization: Bearer <JWT>).',
        {
          'WWW-Authenticate': 'Bearer',
        }
      )
    }
    try {
      c.set('identity', await verifier.verify(token))
    } catch (error) {
      if (!(error instanceof InvalidTokenError)) throw error
      throw new ApiError(401, 'unauthorized', error.message, {
        'WWW-Authenticate': 'Bearer error="invalid_token"',
      })
    }
    await next()
  }

/**
 * Validates the `:campaignId` path parameter (400 `invalid_campaign_id`) and checks that the caller
 * may act on it (403 `forbidden`): its owner, an admin, or anyone while nobody owns it, always
 * within the token's `campaigns` claim.
 */
export const authorizeCampaign = ({
  sessions,
}: {
  sessions: Pick<SessionService, 'ownerOf'>
}): MiddlewareHandler<AppEnv> =>
  async function authorizeCampaign(c, next) {
    const campaignId = c.req.param('campaignId') ?? ''
    if (!CAMPAIGN_ID_PATTERN.test(campaignId)) {
      throw new ApiError(400, 'invalid_campaign_id', CAMPAIGN_ID_MESSAGE)
    }
    if (!canAccessCampaign(c.get('identity'), campaignId, sessions.ownerOf(campaignId))) {
      throw new ApiError(403, 'forbidden', `You may not act on campaign ${campaignId}.`)
    }
    c.set('campaignId', campaignId)
    await next()
  }
