#!/usr/bin/env bash
# The example tool's checks (examples/lti-tool), part of scripts/test.sh: dependencies from its
# committed lockfile (npm ci), a strict type check, the bundle that is deployed (dist/index.mjs),
# then its test: a browser's login and launch against that bundle, with the storage function
# under `cargo lambda watch` on a throwaway PostgreSQL. Its template is checked by
# scripts/check-template.sh. Extra arguments go to vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# shellcheck source=scripts/ensure-tools.sh
. scripts/ensure-tools.sh
ensure_tools node

# The example links the client package (file:../../clients/typescript): it needs the client's
# own dependencies and build.
(cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)

cd examples/lti-tool
npm ci --no-audit --no-fund --loglevel=error
npm run --silent typecheck
npm run --silent build
"$root/scripts/with-postgres.sh" npx vitest run "$@"
