/**
 * The wwebjs engine: one whatsapp-web.js client, driving one system Chromium, per session
 * (./session.ts), with ./patches.ts (what whatsapp-web.js lacks), ./teardown.ts (a stop that
 * always ends), ./profiles.ts (one Chromium profile per campaign), ./capacity.ts (the default
 * MAX_SESSIONS), ./chromium.ts, ./janitor.ts and ./processes.ts.
 *
 * @module
 */
import { systemClock } from '../../clock.ts'
import { silentLogger } from '../../logger.ts'
import type { Engine } from '../engine.ts'
import { profilesRoot } from './janitor.ts'
import type { SharedState, WwebjsEngineOptions } from './options.ts'
import { forgetProfile } from './profiles.ts'
import { WwebjsSession } from './session.ts'

export type { WwebjsEngineOptions } from './options.ts'

export interface WwebjsEngine extends Engine {
  /** Deletes the campaign's profile, its saved login (see `Engine.forgetLogin`). */
  forgetLogin(campaignId: string): Promise<void>
}

/** Creates the wwebjs engine. Run `runJanitor` (./janitor.ts) once before the first session. */
export function createWwebjsEngine(options: WwebjsEngineOptions): WwebjsEngine {
  for (const name of ['destroyTimeoutMs', 'killTimeoutMs'] as const) {
    if (!(options[name] > 0)) throw new Error(`wwebjs engine: ${name} must be a positive number`)
  }
  const shared: SharedState = {
    options,
    clock: options.clock ?? systemClock,
    logger: (options.logger ?? silentLogger).child({ engine: 'wwebjs' }),
    profilesRoot: profilesRoot(options.dataDir),
    sessions: new Set(),
    profileWork: new Map(),
  }
  return {
    name: 'wwebjs',
    createSession: (sessionOptions) => new WwebjsSession(shared, sessionOptions),
    async forgetLogin(campaignId) {
      for (const session of shared.sessions) {
        if (session.campaignId === campaignId && session.isRunning()) {
          throw new Error(`a session of campaign ${campaignId} is running: stop it first`)
        }
      }
      await forgetProfile({
        profilesRoot: shared.profilesRoot,
        campaignId,
        profileWork: shared.profileWork,
        log: shared.logger,
      })
    },
    async close() {
      await Promise.all([...shared.sessions].map((session) => session.stop()))
    },
  }
}
