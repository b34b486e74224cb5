#!/usr/bin/env bash
# The TypeScript client's checks (clients/typescript), part of scripts/test.sh: dependencies from
# the committed lockfile (npm ci), a strict type check, the build, the tests (unit tests, then
# every method and a real @lti-tool/core LTITool flow against the storage function under
# `cargo lambda watch` on a throwaway PostgreSQL), and that the package packs and installs into a
# fresh directory. Extra arguments go to vitest, e.g. scripts/test-client.sh test/mapping.test.ts
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# shellcheck source=scripts/ensure-tools.sh
. scripts/ensure-tools.sh
ensure_tools node

cd clients/typescript
npm ci --no-audit --no-fund --loglevel=error
npm run --silent typecheck
npm run --silent build
"$root/scripts/with-postgres.sh" npx vitest run "$@"

# Packs and installs as a user would: npm install of the tarball in a directory of its own.
scratch=$(mktemp -d "$root/target/client-install.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
npm pack --silent --pack-destination "$scratch" >/dev/null
cd "$scratch"
npm init -y >/dev/null
npm install --no-audit --no-fund --loglevel=error ./lti-storage-client-*.tgz
node --input-type=module -e '
  import { LambdaStorage, StorageError } from "lti-storage-client";
  const storage = new LambdaStorage({ functionName: "storage" });
  if (typeof storage.getLaunchConfig !== "function" || !(new StorageError("Conflict", "op", "m") instanceof Error)) process.exit(1);
'
test -f node_modules/lti-storage-client/dist/index.d.ts
npx --no-install lti-storage --help | grep '^Usage: lti-storage' >/dev/null
echo "test-client: the package packs, installs into a fresh directory, imports, and runs lti-storage"
