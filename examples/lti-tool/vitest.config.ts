import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The test starts `cargo lambda watch`, whose first invocation may compile the storage function.
    hookTimeout: 20 * 60_000,
    testTimeout: 60_000,
  },
});
