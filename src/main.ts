/**
 * The service as a process (`npm start`, which runs `node dist/main.js`): reads the configuration
 * from the environment, starts the composition root (`startServer` in ./server.ts) and hands it to
 * the process supervision (./lifecycle.ts: signals, exit codes, what an uncaught exception does).
 *
 * Exit codes: 0 after a graceful stop (SIGTERM, SIGINT, SIGHUP); 1 for a bad configuration, a
 * failed start, an uncaught exception (after a graceful stop), a stop that outlived its bound, or a
 * second signal.
 *
 * @module
 */
import { ConfigError, loadConfig, type Config } from './config.ts'
import { superviseProcess } from './lifecycle.ts'
import { createLogger } from './logger.ts'
import { startServer } from './server.ts'
import { pageUrls } from './web/index.ts'

async function main(): Promise<void> {
  let config: Config
  try {
    config = loadConfig()
  } catch (error) {
    console.error(error instanceof ConfigError ? error.message : error)
    process.exit(1)
  }
  const logger = createLogger({ level: config.logLevel })
  const supervision = superviseProcess({
    logger,
    // A cluster node hands its linked campaigns over first (DRAIN_TIMEOUT_MS).
    teardownBoundMs:
      config.timeouts.destroyMs +
      config.timeouts.killMs +
      (config.store.databaseUrl ? config.cluster.drainMs : 0),
  })

  try {
    const running = await startServer(config, { logger })
    const pages = pageUrls(running.url, { inspect: config.inspect })
    logger.info(
      {
        url: running.url,
        ...pages,
        pid: process.pid,
        engine: config.engine,
        maxSessions: running.sessions.stats().maxSessions,
      },
      'qrvisor is listening'
    )
    supervision.supervise(running)
  } catch (error) {
    console.error(
      error instanceof ConfigError
        ? error.message
        : `qrvisor could not start: ${error instanceof Error ? error.message : String(error)}`
    )
    await supervision.exit(1)
  }
}

await main()
