#!/usr/bin/env bash
# README's first command: serve both functions locally with `cargo lambda watch` on its default
# port 9000, against $DATABASE_URL if set, else a throwaway PostgreSQL removed on Ctrl-C.
# Extra arguments go to `cargo lambda watch`.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/ensure-tools.sh
. scripts/ensure-tools.sh
ensure_tools

# One shell under with-postgres.sh, so the migrations and the functions see the same database.
# shellcheck disable=SC2016 # expanded by the inner bash
exec scripts/with-postgres.sh bash -c '
  set -euo pipefail
  cargo run -q -p storage -- migrate
  echo "run-local: functions on http://127.0.0.1:9000; try: cargo lambda invoke storage --data-file events/add-client.json"
  exec cargo lambda watch "$@"
' run-local "$@"
