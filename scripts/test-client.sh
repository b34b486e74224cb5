#!/usr/bin/env bash
# The TypeScript client's checks (clients/typescript), part of scripts/test.sh: dependencies from
# the committed lockfile (npm ci), a strict type check, the build, the tests (unit tests, then
# every method and a real @lti-tool/core LTITool flow against the storage function under
# `cargo lambda watch` on a throwaway PostgreSQL), and the package: what `npm pack` puts in it,
# and a tool's code (test/package/consumer.ts) type-checked and run against it installed into a
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

# Packs and installs as a user would: the tarball holds the build's .js and .d.ts, README, LICENSE
# and package.json, nothing else (no tests, no source maps, no sources); npm installs it into a
# directory of its own, where a tool's code type-checks under strict tsc and runs against it.
scratch=$(mktemp -d "$root/target/client-install.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
npm pack --silent --pack-destination "$scratch" >/dev/null
tar -tzf "$scratch"/lti-storage-client-*.tgz | sed 's|^package/||' | sort >"$scratch/files"
unexpected=$(grep -Ev '^(package\.json|README\.md|LICENSE|dist/.+\.(js|d\.ts))$' "$scratch/files" || true)
[ -z "$unexpected" ] || { echo "test-client: the package would ship files it must not:" >&2; echo "$unexpected" >&2; exit 1; }
for required in package.json README.md LICENSE dist/index.js dist/index.d.ts; do
  grep -qx "$required" "$scratch/files" || { echo "test-client: the package lacks $required" >&2; exit 1; }
done
while read -r file; do # every module has its declarations
  case $file in dist/*.js) grep -qx "${file%.js}.d.ts" "$scratch/files" || { echo "test-client: no declarations for $file" >&2; exit 1; } ;; esac
done <"$scratch/files"
echo "test-client: the package holds:" $(cat "$scratch/files")

cp test/package/consumer.ts test/package/tsconfig.json "$scratch/"
tsc=$PWD/node_modules/.bin/tsc
cd "$scratch"
npm init -y >/dev/null
npm pkg set type=module
npm install --no-audit --no-fund --loglevel=error ./lti-storage-client-*.tgz @types/node@20
"$tsc" -p tsconfig.json
node out/consumer.js
npx --no-install lti-storage --help | grep '^Usage: lti-storage' >/dev/null
echo "test-client: the package packs, installs into a fresh directory, type-checks and runs a consumer, and runs lti-storage"
