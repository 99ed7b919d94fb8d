/**
 * The pages: the dashboard (`/`) where a person links a campaign's WhatsApp, the live
 * statechart inspector (`/inspect`) for operators, and the HTTP API reference (`/docs`, Swagger UI
 * reading `/openapi.json`). Plain HTML, CSS and browser modules served as they are (no build
 * step), Mermaid and Swagger UI from the project's own `node_modules`, no CDN.
 *
 * The pages read their token from the URL fragment (`#token=…`), which browsers never send to
 * a server, so tokens stay out of request logs. The pages themselves need no token: every
 * call they make to `/api` and `/ws` carries one.
 *
 * @module
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Hono } from 'hono'
import type { Context } from 'hono'
import { staticFolder, type StaticFolder } from './static.ts'

export interface WebRoutesOptions {
  /** Serve the inspector page (`INSPECT=true`). Its stream, `/ws/inspect`, is admin-only. */
  inspect: boolean
  /** The simulated engine runs: show the buttons that play the phone (scan, disconnect, crash). */
  simulator?: boolean
}

const here = dirname(fileURLToPath(import.meta.url))
const mermaidDist = dirname(createRequire(import.meta.url).resolve('mermaid'))

/** Only Mermaid's self-contained ESM bundle and its chunks are served, nothing else of the package. */
const MERMAID_FILES = /^(mermaid\.esm\.min\.mjs|chunks\/mermaid\.esm\.min\/[\w.-]+\.mjs)$/

const swaggerUiDist = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist'))
/** Only the two files the reference page loads, nothing else of the package. */
const SWAGGER_UI_FILES = /^(swagger-ui\.css|swagger-ui-bundle\.js)$/

const PAGE_HEADERS: Record<string, string> = {
  'Content-Type': 'text/html; charset=utf-8',
  'Cache-Control': 'no-store',
  // Mermaid writes inline styles into the SVG it draws, hence 'unsafe-inline' for styles only.
  'Content-Security-Policy':
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; " +
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
  'Referrer-Policy': 'no-referrer',
  'X-Content-Type-Options': 'nosniff',
}

/**
 * The web pages and their assets as a Hono sub-app, to mount at the root of the service.
 *
 * @example
 * app.route('/', createWebRoutes({ inspect: config.inspect, simulator: config.engine === 'simulated' }))
 */
export function createWebRoutes({ inspect, simulator = false }: WebRoutesOptions): Hono {
  const app = new Hono()
  const flags = { simulator: String(simulator), inspect: String(inspect) }
  const dashboard = renderPage('dashboard.html', flags)
  const assets = staticFolder(`${here}/assets`)
  const mermaid = staticFolder(mermaidDist)
  const swaggerUi = staticFolder(swaggerUiDist)
  const docs = renderPage('docs.html', flags)

  app.get('/', (c) => c.body(dashboard, 200, PAGE_HEADERS))

  if (inspect) {
    const inspector = renderPage('inspect.html', flags)
    app.get('/inspect', (c) => c.body(inspector, 200, PAGE_HEADERS))
  } else {
    // Someone followed a link to it: say how to turn it on (still a 404: there is no inspector).
    const off = renderPage('inspect-off.html', flags)
    app.get('/inspect', (c) => c.body(off, 404, PAGE_HEADERS))
  }

  app.get('/docs', (c) => c.body(docs, 200, PAGE_HEADERS))

  app.get('/assets/vendor/swagger-ui/*', (c) => {
    const path = c.req.path.slice('/assets/vendor/swagger-ui/'.length)
    if (!SWAGGER_UI_FILES.test(path)) return c.notFound()
    return serve(c, swaggerUi, path, 'public, max-age=86400, immutable')
  })

  app.get('/assets/vendor/mermaid/*', (c) => {
    const path = c.req.path.slice('/assets/vendor/mermaid/'.length)
    if (!MERMAID_FILES.test(path)) return c.notFound()
    return serve(c, mermaid, path, 'public, max-age=86400, immutable')
  })

  app.get('/assets/*', (c) => serve(c, assets, c.req.path.slice('/assets/'.length), 'no-cache'))

  return app
}

function renderPage(name: string, flags: Record<string, string>): string {
  const template = readFileSync(`${here}/pages/${name}`, 'utf8')
  return template.replace(/\{\{(\w+)\}\}/g, (_, key: string) => flags[key] ?? '')
}

async function serve(c: Context, folder: StaticFolder, path: string, cacheControl: string) {
  const file = await folder.read(path)
  if (!file) return c.notFound()
  return c.body(file.body, 200, {
    'Content-Type': file.contentType,
    'Cache-Control': cacheControl,
    'X-Content-Type-Options': 'nosniff',
  })
}
