/**
 * Request bodies: read as text (the size limit is enforced before), parsed as JSON, validated with
 * zod. An empty body counts as `{}` so that the seed's frontend, which sends
 * `Content-Type: application/json` and no body, keeps working.
 *
 * @module
 */
import type { Context } from 'hono'
import type { z } from 'zod'
import { ApiError } from './errors.ts'

/**
 * Parses and validates a JSON body; 400 `invalid_body` with a message saying what is wrong.
 *
 * @example
 * const { force } = await readJsonBody(c, z.strictObject({ force: z.boolean().optional() }))
 */
export async function readJsonBody<Schema extends z.ZodType>(
  c: Context,
  schema: Schema
): Promise<z.infer<Schema>> {
  const text = await c.req.text()
  let value: unknown = {}
  if (text.trim() !== '') {
    try {
      value = JSON.parse(text)
    } catch {
      throw new ApiError(400, 'invalid_body', 'The request body is not valid JSON.')
    }
  }
  const parsed = schema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const where = issue && issue.path.length > 0 ? `"${issue.path.join('.')}": ` : ''
    throw new ApiError(400, 'invalid_body', `Invalid body: ${where}${issue?.message ?? 'invalid'}.`)
  }
  return parsed.data
}
