/**
 * The architecture, checked (`npm run lint`): dependencies go one way, edges → session API →
 * session core → engine contract, and nothing goes round in a circle.
 *
 * @type {import('dependency-cruiser').IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'An import circle (type-only imports count: they couple the files just the same).',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'edges-use-the-session-api',
      severity: 'error',
      comment:
        'The edges (http, ws, web, inspect) and the rest of src/ see the session core only through ' +
        'src/session/api.ts (and catalog.ts, its machines described for the docs and diagrams). ' +
        'Only the composition root (src/server.ts) builds the service.',
      from: { path: '^src/', pathNot: ['^src/session/', '^src/server\\.ts$'] },
      to: { path: '^src/session/', pathNot: ['^src/session/(api|catalog)\\.ts$'] },
    },
    {
      name: 'session-core-imports-no-edge',
      severity: 'error',
      comment:
        'The session core knows nothing of HTTP, WebSocket, pages, the inspector, auth or QR images.',
      from: { path: '^src/session/' },
      to: {
        path: '^src/(http|ws|web|inspect|auth|qr|store|webhooks)/|^src/(server|main|metrics)\\.ts$',
      },
    },
    {
      name: 'session-core-imports-only-the-engine-contract',
      severity: 'error',
      comment:
        'The session core talks to engines through the contract (engine.ts) and explains their ' +
        'failures with failureHint.ts (pure text); never through an engine implementation.',
      from: { path: '^src/session/' },
      to: { path: '^src/engines/', pathNot: ['^src/engines/(engine|failureHint)\\.ts$'] },
    },
    {
      name: 'edges-are-independent',
      severity: 'error',
      comment:
        'One edge does not import another (shared pieces live in src/errors.ts, src/auth, src/session/api.ts).',
      from: { path: '^src/(http|ws|web)/' },
      to: { path: '^src/(http|ws|web|inspect)/', pathNot: ['^src/$1/'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.mts', '.js', '.mjs'] },
  },
}
