/**
 * Checks real answers against the service's OpenAPI document (`/openapi.json`): the operation for
 * the path and method must exist, list the status, and its JSON schema must accept the body. Ajv
 * compiles the document's schemas (JSON Schema 2020-12, as OpenAPI 3.1 uses).
 */
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'

export interface OpenApiDocument {
  openapi: string
  paths: Record<string, Record<string, Operation>>
  components?: { schemas?: Record<string, unknown> }
}

interface Operation {
  responses: Record<string, { content?: Record<string, { schema: unknown }> }>
}

export interface Answer {
  method: string
  /** The request's path, with or without a query. */
  path: string
  status: number
  contentType: string | null
  body: unknown
}

/** The document's paths as patterns: `/api/campaigns/{campaignId}/connection` matches one segment. */
function pathPattern(template: string): RegExp {
  const escaped = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')
  return new RegExp(`^${escaped}$`)
}

const pointer = (...parts: string[]) =>
  parts.map((part) => part.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')

/**
 * A checker for one document: `check(answer)` throws, saying what differs, when the answer is not
 * one the document describes.
 *
 * @example
 * const check = responseChecker(await (await fetch(`${url}/openapi.json`)).json())
 * check({ method: 'GET', path: '/healthz', status: 200, contentType: 'application/json', body })
 */
export function responseChecker(document: OpenApiDocument): (answer: Answer) => void {
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false })
  addFormats.default(ajv)
  ajv.addSchema(document, 'openapi.json')
  const paths = Object.keys(document.paths).map((template) => ({
    template,
    pattern: pathPattern(template),
  }))
  const validate = (ref: string, body: unknown, what: string) => {
    const validator = ajv.getSchema(`openapi.json#${ref}`)
    if (!validator) throw new Error(`${what}: no schema at ${ref}`)
    if (!validator(body)) {
      throw new Error(
        `${what}: the answer does not match the document: ${ajv.errorsText(validator.errors)}\n` +
          JSON.stringify(body)
      )
    }
  }
  const errorRef = '/components/schemas/Error'

  return ({ method, path, status, contentType, body }) => {
    const verb = method.toLowerCase()
    const what = `${method} ${path} → ${status}`
    // Preflights are answered by the CORS middleware before any route: not API operations.
    if (verb === 'options') return
    const pathname = new URL(path, 'http://x').pathname
    const template = paths.find(({ pattern }) => pattern.test(pathname))?.template
    const operation = template && document.paths[template]![verb === 'head' ? 'get' : verb]
    if (!operation) {
      // Not an operation: an error in the error shape (404, 405, or the API's 401/403/400/413
      // that come before routing). Pages and their assets are not part of the API.
      if (!contentType?.startsWith('application/json')) {
        if (template) throw new Error(`${what}: a documented path answered ${contentType}`)
        return
      }
      if (status < 400) throw new Error(`${what}: not in the document`)
      validate(errorRef, body, what)
      return
    }
    const key = String(status) in operation.responses ? String(status) : 'default'
    const response = operation.responses[key]
    if (!response) {
      throw new Error(
        `${what}: status not in the document (${Object.keys(operation.responses).join(', ')})`
      )
    }
    if (verb === 'head') return
    const mediaTypes = Object.keys(response.content ?? {})
    if (mediaTypes.length === 0) {
      if (body !== null && body !== undefined && body !== '') {
        throw new Error(`${what}: the document says no body`)
      }
      return
    }
    const mediaType = mediaTypes.find((type) => contentType?.startsWith(type))
    if (!mediaType) {
      throw new Error(`${what}: answered ${contentType}, documented ${mediaTypes.join(', ')}`)
    }
    const ref = pointer(
      '',
      'paths',
      template,
      verb,
      'responses',
      key,
      'content',
      mediaType,
      'schema'
    )
    validate(ref, body, what)
  }
}
