import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // @lti-tool/core 1.0.6 imports some of its own modules without the `.js` extension, which
    // plain Node ESM cannot load; letting vitest transform it resolves them.
    server: { deps: { inline: ['@lti-tool/core'] } },
    // The storage tests start `cargo lambda watch`, whose first invocation compiles the functions.
    hookTimeout: 20 * 60_000,
    testTimeout: 60_000,
  },
});
