#!/usr/bin/env bash
# README's first command: serve both functions locally with `cargo lambda watch` on
# 127.0.0.1:9000, against $DATABASE_URL if set, else a throwaway PostgreSQL removed on Ctrl-C.
# Extra arguments go to `cargo lambda watch` (e.g. --invoke-address 0.0.0.0 to listen on every
# interface: only on a network you trust, the throwaway database trusts every local user).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/ensure-tools.sh
. scripts/ensure-tools.sh
ensure_tools

# `cargo lambda watch` names no alias when it invokes, so locally every invocation gets every
# op, as the admin alias does when deployed (template.yaml never sets this).
export ADMIN_ON_ANY_QUALIFIER=true

# One shell under with-postgres.sh, so the migrations and the functions see the same database.
# shellcheck disable=SC2016 # expanded by the inner bash
exec scripts/with-postgres.sh bash -c '
  set -euo pipefail
  cargo run -q -p storage -- migrate
  echo "run-local: functions on http://127.0.0.1:9000 (function URL routes under /lambda-url/storage/); try: cargo lambda invoke storage --data-file events/add-client.json"
  case " $* " in
    *" -A "* | *" --invoke-address"*) exec cargo lambda watch "$@" ;;
    *) exec cargo lambda watch --invoke-address 127.0.0.1 "$@" ;;
  esac
' run-local "$@"
