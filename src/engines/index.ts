/**
 * Engine choice: the engine `WA_ENGINE` names, built from the configuration. The real engine is
 * imported only when chosen (it pulls in whatsapp-web.js and puppeteer).
 *
 * @module
 */
import { totalmem } from 'node:os'
import { ConfigError, SIMULATED_MAX_SESSIONS, type Config } from '../config.ts'
import type { Logger } from '../logger.ts'
import type { Engine } from './engine.ts'
import { createSimulatedEngine, type SimulatedEngine } from './simulated.ts'

export interface EngineChoice {
  engine: Engine
  /** The simulated engine's controls, for the simulator routes (`WA_ENGINE=simulated` only). */
  simulator?: SimulatedEngine
  maxSessions: number
}

export async function createEngine(config: Config, logger: Logger): Promise<EngineChoice> {
  if (config.engine === 'simulated') {
    const engine = createSimulatedEngine({
      // Linked campaigns' logins are saved under DATA_DIR, so a restart finds them linked.
      dataDir: config.dataDir,
      qrDelayMs: config.simulator.qrDelayMs,
      qrRotateMs: config.simulator.qrRotateMs,
      ...(config.proxy ? { defaultProxy: config.proxy } : {}),
      destroyTimeoutMs: config.timeouts.destroyMs,
      killTimeoutMs: config.timeouts.killMs,
      // A test aid: the cluster tests check from it that two engines of one campaign never ran.
      ledger: config.simulator.ledger,
    })
    return { engine, simulator: engine, maxSessions: config.maxSessions ?? SIMULATED_MAX_SESSIONS }
  }

  // Imported only for the real engine: it pulls in whatsapp-web.js and puppeteer.
  const { createWwebjsEngine } = await import('./wwebjs/index.ts')
  const { recommendedMaxSessions } = await import('./wwebjs/capacity.ts')
  const { findChromium, chromiumNotFoundMessage } = await import('./wwebjs/chromium.ts')
  const { profilesRoot, runJanitor } = await import('./wwebjs/janitor.ts')
  const env: NodeJS.ProcessEnv = config.chromePath ? { CHROME_PATH: config.chromePath } : {}
  const chromePath = findChromium(env)
  if (chromePath === undefined) throw new ConfigError(chromiumNotFoundMessage(env))
  const { whyNotWritable } = await import('./wwebjs/dataDir.ts')
  const unwritable = await whyNotWritable(profilesRoot(config.dataDir))
  if (unwritable !== undefined) {
    throw new ConfigError(
      `DATA_DIR: ${unwritable}. Each campaign's WhatsApp login is saved there: free some space, ` +
        'or set DATA_DIR to a writable directory.'
    )
  }
  // Chromium left behind by an earlier run of this data directory dies before the first session.
  const { killed, locksRemoved } = await runJanitor({ dataDir: config.dataDir, logger })
  if (killed > 0 || locksRemoved > 0) {
    logger.warn({ killed, locksRemoved }, 'janitor removed what an earlier run left behind')
  }
  return {
    engine: createWwebjsEngine({
      dataDir: config.dataDir,
      chromePath,
      destroyTimeoutMs: config.timeouts.destroyMs,
      killTimeoutMs: config.timeouts.killMs,
      logger,
      ...(config.proxy ? { defaultProxy: config.proxy } : {}),
    }),
    maxSessions: config.maxSessions ?? recommendedMaxSessions(totalmem()),
  }
}
