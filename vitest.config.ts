import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Tests that drive a real Chromium are heavy on a 2-core machine: keep files sequential
    // within a worker pool of two.
    maxWorkers: 2,
  },
})
