#!/usr/bin/env bash
# README's second command, and CI's: formatting, lints, the whole test suite on PostgreSQL (with the
# end-to-end tests through cargo lambda watch), the TypeScript client's (scripts/test-client.sh),
# the example tool's (scripts/test-example.sh), then the deployment checks (scripts/check-template.sh).
# Tests use TEST_DATABASE_URL if set, else their own throwaway cluster: a DATABASE_URL in your
# environment is deliberately ignored, so tests never touch a real database.
# Extra arguments go to `cargo test`, e.g. scripts/test.sh -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."

# One summary line at the end, saying which step failed if one did.
step=setup
summary() {
  local rc=$?
  if [ "$rc" -eq 0 ]; then echo "test.sh: PASS (fmt, clippy, layout, tests, client, example, template) in ${SECONDS}s"
  else echo "test.sh: FAIL at $step (exit $rc) after ${SECONDS}s"; fi
}
trap summary EXIT

# shellcheck source=scripts/ensure-tools.sh
. scripts/ensure-tools.sh
ensure_tools

step="cargo fmt"
cargo fmt --all -- --check
step="cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
step="layout"
# The LTI storage itself builds without TLS, AWS or the Lambda runtime (README "Layout"): its
# dependencies, its tests' included, name none of them.
leaked=$(cargo tree -q -p lti-storage -e normal,build,dev --prefix none |
  awk '{print $1}' | grep -xE 'rustls|ring|hyper|lambda_runtime|lambda-postgres-login|lambda-aws' | sort -u || true)
[ -z "$leaked" ] || { echo "lti-storage depends on: $(echo "$leaked" | tr "\n" " ")"; exit 1; }

if [ -n "${TEST_DATABASE_URL:-}" ]; then
  export DATABASE_URL="$TEST_DATABASE_URL" # with-postgres.sh then uses it instead of starting a cluster
else
  unset DATABASE_URL
fi
step="cargo test"
scripts/with-postgres.sh cargo test --workspace "$@"
step="client tests"
scripts/test-client.sh
step="example tool tests"
scripts/test-example.sh
step="template checks"
scripts/check-template.sh
