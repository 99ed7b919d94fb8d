import { defineConfig } from 'vitest/config'

/**
 * Tests that drive a real Chromium, or run the service as several processes (a burst, a cluster),
 * run after all the others, one file at a time: on a 2-core machine, browsers and bursts next to the
 * simulated-time suites (or next to each other) starve their deadlines.
 */
const REAL_BROWSER_TESTS = [
  'test/engines/wwebjs*.test.ts',
  'test/engines/janitor.test.ts',
  'test/web/**/*.test.ts',
  'test/process/**/*.test.ts',
  'test/cluster/cluster.test.ts',
  'test/cluster/cluster.*.test.ts',
]

export default defineConfig({
  test: {
    testTimeout: 20_000,
    hookTimeout: 20_000,
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: REAL_BROWSER_TESTS,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'real-browser',
          include: REAL_BROWSER_TESTS,
          sequence: { groupOrder: 1 },
          // One browser-driving file at a time: two at once starved each other's deadlines.
          fileParallelism: false,
        },
      },
    ],
  },
})
