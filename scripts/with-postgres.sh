#!/usr/bin/env bash
# Usage: scripts/with-postgres.sh CMD [ARGS...]
# Runs CMD with a PostgreSQL server available and DATABASE_URL / TEST_DATABASE_URL exported.
# - DATABASE_URL already set: that server is used as is; nothing is started.
# - Otherwise: a throwaway cluster (scripts/pg-cluster.sh) is started, CMD runs, then the
#   cluster is stopped and deleted, also on Ctrl-C. Exits with CMD's status.
set -euo pipefail

[ $# -gt 0 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }

if [ -n "${DATABASE_URL:-}" ]; then
  export TEST_DATABASE_URL="${TEST_DATABASE_URL:-$DATABASE_URL}"
  exec "$@"
fi

cluster_script="$(cd "$(dirname "$0")" && pwd)/pg-cluster.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/with-postgres.XXXXXX")
# shellcheck disable=SC2317 # invoked by the trap
cleanup() { "$cluster_script" destroy "$tmp/cluster" || true; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT # exiting runs the EXIT trap, i.e. cleanup
trap 'exit 143' TERM
chmod 755 "$tmp" # as root the server runs as another user, who must reach the cluster below

DATABASE_URL=$("$cluster_script" create "$tmp/cluster")
export DATABASE_URL TEST_DATABASE_URL="$DATABASE_URL"
echo "with-postgres: throwaway PostgreSQL at $DATABASE_URL" >&2

# Not exec: the cluster must be cleaned up once CMD is done.
status=0; "$@" || status=$?
exit "$status"
