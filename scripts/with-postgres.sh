#!/usr/bin/env bash
# Usage: scripts/with-postgres.sh CMD [ARGS...]
# Runs CMD with a PostgreSQL server available and DATABASE_URL / TEST_DATABASE_URL exported.
# - DATABASE_URL already set: that server is used as is; nothing is started.
# - Otherwise: a throwaway cluster (temp dir, random port on 127.0.0.1, no fsync) is started,
#   CMD runs, then the cluster is stopped and deleted, also on Ctrl-C. Exits with CMD's status.
# It never uses port 5432 or an existing server, so it coexists with a system PostgreSQL.
set -euo pipefail

log() { echo "with-postgres: $*" >&2; }
[ $# -gt 0 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }

if [ -n "${DATABASE_URL:-}" ]; then
  export TEST_DATABASE_URL="${TEST_DATABASE_URL:-$DATABASE_URL}"
  exec "$@"
fi

# Server binaries: prefer PATH; Debian/Ubuntu keep them in /usr/lib/postgresql/VERSION/bin and
# Homebrew's versioned formulas in .../opt/postgresql@VERSION/bin, so fall back to the newest there.
have_pg() { command -v initdb && command -v pg_ctl && command -v postgres; } >/dev/null 2>&1
find_pg() {
  local d v best=0 found=""
  have_pg && return 0
  for d in /usr/lib/postgresql/*/bin /opt/homebrew/opt/postgresql@*/bin /usr/local/opt/postgresql@*/bin; do
    v=${d//[^0-9]/} # the version is the only number in these paths
    if [ -x "$d/initdb" ] && [ "$v" -gt "$best" ]; then best=$v found=$d; fi
  done
  if [ -n "$found" ]; then PATH="$found:$PATH"; fi
  have_pg
}
if ! find_pg; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    log "installing PostgreSQL with apt-get"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  fi
  find_pg || {
    log "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found. Install them with:"
    echo "  sudo apt-get install postgresql    # Debian/Ubuntu" >&2
    echo "  brew install postgresql@16         # macOS" >&2
    log "or set DATABASE_URL to an existing server."
    exit 1
  }
fi
# Absolute paths: they must still resolve after switching user (runuser/su may reset PATH).
initdb=$(command -v initdb) pg_ctl=$(command -v pg_ctl) postgres=$(command -v postgres)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/with-postgres.XXXXXX")
data=$tmp/data # the socket goes in $tmp: short path, private to this run

# initdb/postgres refuse to run as root: as root, the server runs as an unprivileged user owning $tmp.
as_db_user() { "$@"; }
# Only stop a server that was started; immediate mode because the data is thrown away anyway.
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
  if [ -f "$data/postmaster.pid" ]; then
    as_db_user "$pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT # exiting runs the EXIT trap, i.e. cleanup
trap 'exit 143' TERM

if [ "$(id -u)" -eq 0 ]; then
  db_user=postgres
  id -u postgres >/dev/null 2>&1 || db_user=nobody
  chown "$db_user" "$tmp" && chmod 755 "$tmp" # the user must be able to traverse and write it
  # cd: the caller's cwd (e.g. /root) may be unreadable for that user.
  if command -v runuser >/dev/null; then
    as_db_user() { (cd "$tmp" && runuser -u "$db_user" -- "$@"); }
  elif command -v setpriv >/dev/null; then
    as_db_user() { (cd "$tmp" && setpriv --reuid="$db_user" --regid="$(id -g "$db_user")" --init-groups -- "$@"); }
  else # shellcheck disable=SC2016 # $0/$@ are for the user's shell
    as_db_user() { (cd "$tmp" && su -s /bin/sh -c 'exec "$0" "$@"' "$db_user" -- "$@"); }
  fi
fi

# A random free port (bash's /dev/tcp connect fails when nothing listens), never 5432, so we
# neither clash with nor depend on a server the machine already runs.
port=""; for _ in 1 2 3 4 5 6 7 8 9 10; do
  p=$((20000 + (RANDOM * 32768 + RANDOM) % 40001))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p && break; fi
done
[ -n "$port" ] || { log "no free TCP port found"; exit 1; }

# trust auth + no durability: a disposable, fast test server.
as_db_user "$initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 --locale=C >"$tmp/initdb.log" 2>&1 ||
  { cat "$tmp/initdb.log" >&2; log "initdb failed"; exit 1; }
opts="-h 127.0.0.1 -p $port -k '$tmp' -c fsync=off -c synchronous_commit=off"
opts+=" -c full_page_writes=off -c max_connections=300"
# -w waits until the server accepts connections.
as_db_user "$pg_ctl" -D "$data" -l "$tmp/server.log" -o "$opts" -w -t 60 start >"$tmp/pg_ctl.log" 2>&1 ||
  { cat "$tmp/pg_ctl.log" "$tmp/server.log" >&2; log "could not start PostgreSQL (log above)"; exit 1; }

export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
export TEST_DATABASE_URL="$DATABASE_URL"
log "throwaway $("$postgres" --version) at $DATABASE_URL"

# Not exec: the cluster must be cleaned up once CMD is done.
status=0; "$@" || status=$?
exit "$status"
