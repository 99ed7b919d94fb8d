/**
 * Who is calling, as established from a verified token, and what that caller may touch.
 *
 * @module
 */
import type { Caller } from '../session/api.ts'

export interface Identity {
  /** The token's `sub`. */
  userId: string
  /** The token's `roles` includes `"admin"`. */
  admin: boolean
  /** The token's `campaigns` claim, if it has one: only these campaigns are allowed. */
  campaigns: ReadonlySet<string> | null
  /**
   * When the token stops being accepted (ms since the epoch): its `exp` plus the verifier's clock
   * tolerance. A socket opened with it loses its access then.
   */
  validUntil: number
}

/** The session service's view of a caller. */
export function toCaller(identity: Identity): Caller {
  return { userId: identity.userId, admin: identity.admin }
}

/** Whether the token behind `identity` is no longer accepted at `now`. */
export function hasExpired(identity: Identity, now: number = Date.now()): boolean {
  return now >= identity.validUntil
}

/**
 * Whether `identity` may act on a campaign whose first starter is `owner` (undefined while nobody
 * has started it). The `campaigns` claim narrows every token, an admin's too; within it, an admin
 * may act on every campaign and anyone else on campaigns nobody owns yet or that they own.
 *
 * @example
 * canAccessCampaign(alice, 'spring-sale', sessions.ownerOf('spring-sale'))
 */
export function canAccessCampaign(
  identity: Identity,
  campaignId: string,
  owner: string | undefined
): boolean {
  if (identity.campaigns !== null && !identity.campaigns.has(campaignId)) return false
  if (identity.admin) return true
  return owner === undefined || owner === identity.userId
}
