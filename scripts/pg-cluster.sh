#!/usr/bin/env bash
# A disposable PostgreSQL cluster in a directory of its own, for scripts and tests:
#   scripts/pg-cluster.sh create DIR [--password PW [--auth M]] [--tls CERT KEY] [-c name=value ...]
#       initdb in DIR (which must not exist), start on a free port of 127.0.0.1, print the URL.
#       --password: password auth for user postgres with PW (else trust), by method M:
#       scram-sha-256 (default), md5 or password (cleartext);
#       --tls: serve TLS with this certificate and key; -c: server settings.
#   scripts/pg-cluster.sh stop|start|restart DIR   (start again on the same port)
#   scripts/pg-cluster.sh destroy DIR              stop and delete DIR
# Root cannot run PostgreSQL: as root the server runs as `postgres` (or `nobody`), owning DIR;
# DIR's parent must then be searchable by that user (chmod 755).
# Never port 5432 or an existing server, so it coexists with a system PostgreSQL.
set -euo pipefail

log() { echo "pg-cluster: $*" >&2; }
usage() { sed -n '2,12p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1 dir=$2
shift 2

# Server binaries: PATH first; Debian/Ubuntu keep them in /usr/lib/postgresql/VERSION/bin and
# Homebrew's versioned formulas in .../opt/postgresql@VERSION/bin: take the newest there.
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
    exit 1
  }
fi
# Absolute paths: they must still resolve after switching user (runuser/su may reset PATH).
initdb=$(command -v initdb) pg_ctl=$(command -v pg_ctl)

as_db_user() { "$@"; }
db_user=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
  db_user=postgres
  id -u postgres >/dev/null 2>&1 || db_user=nobody
  # cd: the caller's cwd (e.g. /root) may be unreadable for that user.
  if command -v runuser >/dev/null; then
    as_db_user() { (cd "$dir" && runuser -u "$db_user" -- "$@"); }
  elif command -v setpriv >/dev/null; then
    as_db_user() { (cd "$dir" && setpriv --reuid="$db_user" --regid="$(id -g "$db_user")" --init-groups -- "$@"); }
  else # shellcheck disable=SC2016 # $0/$@ are for the user's shell
    as_db_user() { (cd "$dir" && su -s /bin/sh -c 'exec "$0" "$@"' "$db_user" -- "$@"); }
  fi
fi

start() {
  # -w waits until the server accepts connections.
  as_db_user "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "$(cat "$dir/options") -p $(cat "$dir/port")" \
    -w -t 60 start >"$dir/pg_ctl.log" 2>&1
}
fail_to_start() {
  cat "$dir/pg_ctl.log" "$dir/server.log" >&2; log "could not start PostgreSQL (log above)"; exit 1
}
start_or_fail() { start || fail_to_start; }
# A free port below the kernel's ephemeral range (whose ports outgoing connections take at
# any moment), never 5432.
pick_port() {
  local low p
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % (low - 10000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p" && return; fi
  done
  log "no free TCP port found"; exit 1
}
# mode: fast (connections are ended, committed data kept) or immediate (a crash).
stop() {
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_db_user "$pg_ctl" -D "$dir/data" -m "$1" -w stop >/dev/null 2>&1 || true
  fi
}

case $action in
create)
  [ ! -e "$dir" ] || { log "$dir exists already"; exit 1; }
  mkdir -p "$dir"
  password="" method=scram-sha-256 settings=""
  while [ $# -gt 0 ]; do
    case $1 in
    --password) password=$2; shift 2 ;;
    --auth) method=$2; shift 2 ;;
    --tls) cp "$2" "$dir/server.crt"; cp "$3" "$dir/server.key"; chmod 600 "$dir/server.key"
      settings+=" -c ssl=on -c ssl_cert_file='$dir/server.crt' -c ssl_key_file='$dir/server.key'"; shift 3 ;;
    -c) settings+=" -c $2"; shift 2 ;;
    *) usage ;;
    esac
  done
  chown -R "$db_user" "$dir" && chmod 755 "$dir" # the server's user must own its files
  auth=(-A trust)
  if [ -n "$password" ]; then
    if [ "$method" = md5 ]; then
      # Stored as MD5 (as given, "md5" + md5(password + user)): a SCRAM secret would make
      # the server ask for SCRAM instead.
      password="md5$(printf '%s' "${password}postgres" | { md5sum 2>/dev/null || md5 -q; } | cut -c1-32)"
    fi
    printf '%s\n' "$password" >"$dir/pwfile" && chown "$db_user" "$dir/pwfile"
    auth=(-A "$method" --pwfile="$dir/pwfile")
  fi
  as_db_user "$initdb" -D "$dir/data" "${auth[@]}" -U postgres --no-sync -E UTF8 --locale=C \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; log "initdb failed"; exit 1; }
  rm -f "$dir/pwfile"
  # No durability: a disposable, fast server.
  echo "-h 127.0.0.1 -k '$dir' -c fsync=off -c synchronous_commit=off" \
    "-c full_page_writes=off -c max_connections=300 $settings" >"$dir/options"
  # Another process may take the port between the check and the bind: try a few.
  for attempt in 1 2 3 4 5; do
    pick_port >"$dir/port"
    rm -f "$dir/server.log"
    start && break
    if [ "$attempt" -eq 5 ] || ! grep -q "could not create any TCP/IP sockets" "$dir/server.log"; then
      fail_to_start
    fi
  done
  echo "postgres://postgres@127.0.0.1:$(cat "$dir/port")/postgres"
  ;;
start) start_or_fail ;;
stop) stop fast ;;
restart) stop fast; start_or_fail ;;
destroy) stop immediate; rm -rf "$dir" ;;
*) usage ;;
esac
