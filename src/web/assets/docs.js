// The HTTP API reference (/docs): Swagger UI, served from the service's own node_modules, reading
// the service's OpenAPI document. "Try it out" calls this service with the token given under
// "Authorize"; nothing is fetched from anywhere else (no validator badge, no remote definitions).
/* global SwaggerUIBundle */
window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: 'BaseLayout',
})
