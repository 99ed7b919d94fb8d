/**
 * Chromium on this machine: where to find it, how every Chromium we start is marked, and how to
 * find the processes of one session again.
 *
 * puppeteer never downloads a browser in this project (`.puppeteerrc.cjs`), so the service must
 * find one, and refuse to start with a message that says what to do when there is none.
 *
 * Marks: the browser process carries `--qrvisor-campaign=<id>` and `--qrvisor-session=<id>` on its
 * command line (Chromium ignores switches it does not know), so `pgrep -af qrvisor-` shows every
 * browser we started and the janitor finds the ones an earlier run left behind. Chromium does not
 * copy unknown switches to its children, but they stay in the browser's process group, except
 * `chrome_crashpad_handler`, which daemonizes into a group of its own. It does inherit the
 * browser's environment, so the same marks also go into `QRVISOR_CAMPAIGN`/`QRVISOR_SESSION`/`QRVISOR_PROFILE_DIR`.
 *
 * @module
 */
import { accessSync, constants, readdirSync, statSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { listProcesses, readEnvironmentVariable, type ProcessInfo } from './processes.ts'

/** Where we look when `CHROME_PATH` is not set, in order. */
export const SYSTEM_CHROMIUM_PATHS = [
  '/usr/bin/chromium',
  '/usr/bin/chromium-browser',
  '/usr/bin/google-chrome',
  '/usr/bin/google-chrome-stable',
] as const

export const INSTALL_HINT = 'apt-get install -y chromium'

/**
 * The Chromium (or Chrome) executable to use: `CHROME_PATH` when set (and then only that one: a
 * wrong value is an error, not a reason to pick another browser), else the usual system
 * locations, else a browser in puppeteer's own cache. Undefined when there is none.
 */
export function findChromium(
  env: NodeJS.ProcessEnv = process.env,
  systemPaths: readonly string[] = SYSTEM_CHROMIUM_PATHS
): string | undefined {
  const configured = env.CHROME_PATH?.trim()
  if (configured) return isExecutableFile(configured) ? configured : undefined
  for (const candidate of systemPaths) {
    if (isExecutableFile(candidate)) return candidate
  }
  return findInPuppeteerCache(puppeteerCacheDir(env))
}

/** Why no browser was found and what to do about it; the service refuses to start with this. */
export function chromiumNotFoundMessage(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.CHROME_PATH?.trim()
  if (configured) {
    return (
      `CHROME_PATH is set to "${configured}", which is not an executable file. ` +
      `Point CHROME_PATH at a Chromium or Google Chrome executable, or unset it to use the ` +
      `system Chromium (Debian/Ubuntu: ${INSTALL_HINT}).`
    )
  }
  return (
    `No Chromium found for WA_ENGINE=wwebjs (looked in ${SYSTEM_CHROMIUM_PATHS.join(', ')} and ` +
    `puppeteer's cache ${puppeteerCacheDir(env)}). Install it (Debian/Ubuntu: ${INSTALL_HINT}) ` +
    `or set CHROME_PATH to a Chromium or Google Chrome executable.`
  )
}

/** `findChromium`, or an Error carrying `chromiumNotFoundMessage`. */
export function requireChromium(env: NodeJS.ProcessEnv = process.env): string {
  const found = findChromium(env)
  if (!found) throw new Error(chromiumNotFoundMessage(env))
  return found
}

function puppeteerCacheDir(env: NodeJS.ProcessEnv): string {
  return env.PUPPETEER_CACHE_DIR || join(homedir(), '.cache', 'puppeteer')
}

/** Newest Chrome for Testing (or headless shell) that puppeteer installed into its cache. */
function findInPuppeteerCache(cacheDir: string): string | undefined {
  const layouts = [
    { dir: 'chrome', binary: ['chrome-linux64', 'chrome'] },
    {
      dir: 'chrome-headless-shell',
      binary: ['chrome-headless-shell-linux64', 'chrome-headless-shell'],
    },
  ]
  for (const { dir, binary } of layouts) {
    let versions: string[]
    try {
      versions = readdirSync(join(cacheDir, dir))
    } catch {
      continue
    }
    // Directory names look like `linux-146.0.7680.31`; newest first.
    versions.sort((a, b) => b.localeCompare(a, 'en', { numeric: true }))
    for (const version of versions) {
      const candidate = join(cacheDir, dir, version, ...binary)
      if (isExecutableFile(candidate)) return candidate
    }
  }
  return undefined
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return statSync(path).isFile()
  } catch {
    return false
  }
}

export const CAMPAIGN_MARKER = '--qrvisor-campaign='
export const SESSION_MARKER = '--qrvisor-session='
const CAMPAIGN_ENV = 'QRVISOR_CAMPAIGN'
export const SESSION_ENV = 'QRVISOR_SESSION'
/** The profile directory, so the janitor can tell this data directory's crash handlers apart. */
export const PROFILE_ENV = 'QRVISOR_PROFILE_DIR'

/** The command-line marks of one session's browser. */
export function markerArgs(campaignId: string, sessionId: string): string[] {
  return [`${CAMPAIGN_MARKER}${campaignId}`, `${SESSION_MARKER}${sessionId}`]
}

/**
 * Variables a browser may inherit from the service, by name; see `chromiumEnvironment`.
 * Locale and time zone; the home and XDG directories, display and fontconfig (where Chromium finds
 * its settings, fonts and caches); TMPDIR (Chromium's shared memory lives there with
 * `--disable-dev-shm-usage`); the proxy variables (with no desktop settings, Chromium on Linux
 * takes its proxy from them); CHROMIUM_FLAGS (read by Debian's `chromium` launcher script).
 */
const CHROMIUM_VARIABLES = new Set([
  'PATH',
  'HOME',
  'LANG',
  'LANGUAGE',
  'TZ',
  'TMPDIR',
  'DISPLAY',
  'WAYLAND_DISPLAY',
  'CHROMIUM_FLAGS',
  'http_proxy',
  'https_proxy',
  'no_proxy',
  'all_proxy',
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'ALL_PROXY',
])
const CHROMIUM_VARIABLE_PREFIXES = ['LC_', 'XDG_', 'FONTCONFIG_']

/**
 * The environment a browser starts with: only what Chromium needs from the service's own. The
 * service's configuration (JWT_SECRET and the rest) and anything else it was given stay out of
 * every browser process, which loads remote content (and, as root, runs without its sandbox).
 *
 * @example
 * chromiumEnvironment({ PATH: '/usr/bin', JWT_SECRET: 's3cret' }) // { PATH: '/usr/bin' }
 */
export function chromiumEnvironment(
  source: NodeJS.ProcessEnv = process.env
): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(source)) {
    if (value === undefined) continue
    const allowed =
      CHROMIUM_VARIABLES.has(name) ||
      CHROMIUM_VARIABLE_PREFIXES.some((prefix) => name.startsWith(prefix))
    if (allowed) env[name] = value
  }
  return env
}

/** The environment marks of one session's browser (inherited by the crash handler). */
export function markerEnv(
  campaignId: string,
  sessionId: string,
  profileDir: string
): Record<string, string> {
  return { [CAMPAIGN_ENV]: campaignId, [SESSION_ENV]: sessionId, [PROFILE_ENV]: profileDir }
}

/** The value of a `--name=value` switch in a command line, if present. */
export function switchValue(argv: readonly string[], prefix: string): string | undefined {
  const found = argv.find((arg) => arg.startsWith(prefix))
  return found === undefined ? undefined : found.slice(prefix.length)
}

/**
 * Every process that belongs to one session: the marked browser, everything in its process group
 * (and in `extraGroups`, e.g. the group of a browser whose pid we learned before it died), and
 * the crash handler found by its environment.
 */
export function findSessionProcesses(
  sessionId: string,
  extraGroups: Iterable<number> = []
): ProcessInfo[] {
  const processes = listProcesses()
  const groups = new Set(extraGroups)
  for (const candidate of processes) {
    if (switchValue(candidate.argv, SESSION_MARKER) === sessionId) groups.add(candidate.pgid)
  }
  return processes.filter(
    (candidate) =>
      candidate.pid !== process.pid &&
      (groups.has(candidate.pgid) ||
        readEnvironmentVariable(candidate.pid, SESSION_ENV) === sessionId)
  )
}
