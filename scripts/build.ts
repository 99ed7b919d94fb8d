/**
 * `npm run build`: the service as JavaScript in `dist/`, which `npm start` runs with plain node.
 *
 * tsc compiles `src/` (tsconfig.build.json rewrites the `.ts` import specifiers to `.js`), then the
 * files the modules read at run time from beside themselves are copied next to them: the QR render
 * worker and the cluster's watchdog worker (plain `.mjs` modules, so that worker threads load them
 * without a TypeScript loader) and the pages with their assets.
 *
 * @module
 */
import { execFileSync } from 'node:child_process'
import { cpSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const OUT = join(ROOT, 'dist')
/** Paths under `src/` that modules read at run time, relative to themselves. */
const RUN_TIME_FILES = [
  'qr/render-worker.mjs',
  'cluster/watchdogWorker.mjs',
  'web/pages',
  'web/assets',
]

// A fresh tree: nothing of a module that was renamed or removed may linger in dist/.
rmSync(OUT, { recursive: true, force: true })
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' })
for (const path of RUN_TIME_FILES) {
  cpSync(join(ROOT, 'src', path), join(OUT, path), { recursive: true })
}
