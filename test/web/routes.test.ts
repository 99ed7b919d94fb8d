import { describe, expect, it } from 'vitest'
import { createWebRoutes, pageUrls } from '../../src/web/index.ts'

describe('createWebRoutes', () => {
  const app = createWebRoutes({ inspect: true, simulator: true })

  it('serves the dashboard with its flags and a strict content security policy', async () => {
    const response = await app.request('/')
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/^text\/html/)
    expect(response.headers.get('content-security-policy')).toContain("default-src 'self'")
    expect(response.headers.get('cache-control')).toBe('no-store')
    const html = await response.text()
    expect(html).toContain('data-simulator="true"')
    expect(html).toContain('/assets/dashboard.js')
    expect(html).not.toContain('{{')
  })

  it('serves the inspector only when inspection is on', async () => {
    expect((await app.request('/inspect')).status).toBe(200)
    const off = createWebRoutes({ inspect: false })
    expect((await off.request('/inspect')).status).toBe(404)
    // Issue 9: a page that says how to turn it on, not a JSON 404.
    const answer = await off.request('/inspect')
    expect(answer.headers.get('content-type')).toMatch(/^text\/html/)
    expect(await answer.text()).toContain('INSPECT=true')
    const html = await (await off.request('/')).text()
    expect(html).toContain('data-simulator="false"')
    expect(html).toContain('data-inspect="false"')
  })

  it('serves the pages’ assets with their types', async () => {
    const script = await app.request('/assets/dashboard.js')
    expect(script.status).toBe(200)
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/)
    const css = await app.request('/assets/app.css')
    expect(css.headers.get('content-type')).toMatch(/^text\/css/)
  })

  it('serves Mermaid’s ESM bundle and its chunks from node_modules, nothing else of it', async () => {
    const bundle = await app.request('/assets/vendor/mermaid/mermaid.esm.min.mjs')
    expect(bundle.status).toBe(200)
    expect(bundle.headers.get('content-type')).toMatch(/^text\/javascript/)
    const source = await bundle.text()
    const chunk = /\.\/(chunks\/mermaid\.esm\.min\/[\w.-]+\.mjs)/.exec(source)?.[1]
    expect(chunk).toBeDefined()
    expect((await app.request(`/assets/vendor/mermaid/${chunk}`)).status).toBe(200)
    expect((await app.request('/assets/vendor/mermaid/mermaid.js')).status).toBe(404)
    expect((await app.request('/assets/vendor/mermaid/../package.json')).status).toBe(404)
  })

  it('serves the API reference page and only Swagger UI’s two files from node_modules', async () => {
    const page = await app.request('/docs')
    expect(page.status).toBe(200)
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'")
    const html = await page.text()
    expect(html).toContain('/assets/vendor/swagger-ui/swagger-ui-bundle.js')
    expect(html).toContain('/assets/docs.js')
    const bundle = await app.request('/assets/vendor/swagger-ui/swagger-ui-bundle.js')
    expect(bundle.status).toBe(200)
    expect(bundle.headers.get('content-type')).toMatch(/^text\/javascript/)
    const css = await app.request('/assets/vendor/swagger-ui/swagger-ui.css')
    expect(css.headers.get('content-type')).toMatch(/^text\/css/)
    for (const path of ['index.html', 'swagger-initializer.js', '../package.json', 'index.js']) {
      expect((await app.request(`/assets/vendor/swagger-ui/${path}`)).status, path).toBe(404)
    }
  })

  it('refuses paths outside the assets folder and unknown file types', async () => {
    for (const path of [
      '/assets/../routes.ts',
      '/assets/%2e%2e/routes.ts',
      '/assets/..%2fstatic.ts',
      '/assets/missing.js',
      '/assets/app.css.map',
    ]) {
      expect((await app.request(path)).status, path).toBe(404)
    }
  })

  it('says where the pages are, as a browser should open them', () => {
    expect(pageUrls('http://127.0.0.1:3000', { inspect: false })).toEqual({
      dashboard: 'http://127.0.0.1:3000/',
      inspector: null,
    })
    expect(pageUrls('http://0.0.0.0:8080', { inspect: true })).toEqual({
      dashboard: 'http://localhost:8080/',
      inspector: 'http://localhost:8080/inspect',
    })
    expect(pageUrls('http://[::]:3000', { inspect: true }).dashboard).toBe('http://localhost:3000/')
  })
})
