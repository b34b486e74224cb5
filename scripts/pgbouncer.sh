#!/usr/bin/env bash
# PgBouncer in front of a local PostgreSQL, in a directory of its own, for tests and the benchmark:
#   scripts/pgbouncer.sh create DIR SERVER_PORT [--database 'ALIAS = CONNSTR' ...] [name=value ...]
#       write DIR/pgbouncer.ini (transaction pooling, trust auth, every database name passed
#       through to 127.0.0.1:SERVER_PORT, plus the [databases] entries and [pgbouncer] settings
#       given), start it on a free port of 127.0.0.1, print the port.
#   scripts/pgbouncer.sh stop|start|restart DIR   (start again on the same port)
#   scripts/pgbouncer.sh destroy DIR              stop and delete DIR
# Exits 3 when PgBouncer is not installed and cannot be (not root, or no apt-get), after
# printing the command that installs it. Root cannot run PgBouncer: as root it runs as
# `postgres` (or `nobody`), owning DIR, whose parent must then be searchable (chmod 755).
set -euo pipefail

log() { echo "pgbouncer.sh: $*" >&2; }
usage() { sed -n '2,12p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1 dir=$2
shift 2

# Debian puts it in /usr/sbin, which a user's PATH may lack.
find_pgbouncer() { PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v pgbouncer; }
if ! pgbouncer=$(find_pgbouncer); then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    # Tests start several PgBouncers at once: one installs, the others wait for it (apt
    # refuses a second apt running beside the first).
    lock="$(cd "$(dirname "$0")/.." && pwd)/target/pgbouncer-install.lock"
    mkdir -p "$(dirname "$lock")"
    exec 9>"$lock"
    flock 9
    if ! find_pgbouncer >/dev/null; then
      log "installing PgBouncer with apt-get"
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >&2
    fi
    flock -u 9
    exec 9>&-
  fi
  pgbouncer=$(find_pgbouncer) || {
    log "PgBouncer not found. Install it with:"
    echo "  sudo apt-get install pgbouncer    # Debian/Ubuntu" >&2
    echo "  brew install pgbouncer            # macOS" >&2
    exit 3
  }
fi

run_as=()
if [ "$(id -u)" -eq 0 ]; then
  user=postgres
  id -u postgres >/dev/null 2>&1 || user=nobody
  run_as=(-u "$user")
fi

# A free port below the kernel's ephemeral range, never 6432 (a system PgBouncer's).
pick_port() {
  local low p
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % (low - 10000)))
    if [ "$p" -ne 6432 ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p" && return
    fi
  done
  log "no free TCP port found"; exit 1
}

start() {
  rm -f "$dir/pgbouncer.pid"
  "$pgbouncer" -d "${run_as[@]}" "$dir/pgbouncer.ini" >>"$dir/start.log" 2>&1 || return 1
  # -d returns once the daemon forked; wait until it listens.
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$(cat "$dir/port")") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}
fail_to_start() { cat "$dir/start.log" "$dir/pgbouncer.log" >&2 2>/dev/null; log "could not start PgBouncer (log above)"; exit 1; }
stop() {
  local pid
  pid=$(cat "$dir/pgbouncer.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
  kill -9 "$pid" 2>/dev/null || true
}

case $action in
create)
  [ $# -ge 1 ] || usage
  server_port=$1
  shift
  [ ! -e "$dir" ] || { log "$dir exists already"; exit 1; }
  mkdir -p "$dir"
  databases=() settings=()
  while [ $# -gt 0 ]; do
    case $1 in
    --database) databases+=("$2"); shift 2 ;;
    *=*) settings+=("$1"); shift ;;
    *) usage ;;
    esac
  done
  pick_port >"$dir/port"
  echo '"postgres" ""' >"$dir/userlist.txt"
  {
    echo "[databases]"
    printf '%s\n' "${databases[@]+"${databases[@]}"}"
    echo "* = host=127.0.0.1 port=$server_port"
    echo "[pgbouncer]"
    echo "listen_addr = 127.0.0.1"
    echo "listen_port = $(cat "$dir/port")"
    echo "unix_socket_dir ="
    echo "auth_type = trust"
    echo "auth_file = $dir/userlist.txt"
    echo "admin_users = postgres"
    echo "pool_mode = transaction"
    echo "max_client_conn = 2000"
    echo "logfile = $dir/pgbouncer.log"
    echo "pidfile = $dir/pgbouncer.pid"
    printf '%s\n' "${settings[@]+"${settings[@]}"}"
  } >"$dir/pgbouncer.ini"
  if [ ${#run_as[@]} -gt 0 ]; then chown -R "${run_as[1]}" "$dir"; fi
  start || fail_to_start
  cat "$dir/port"
  ;;
start) start || fail_to_start ;;
stop) stop ;;
restart) stop; start || fail_to_start ;;
destroy) stop; rm -rf "$dir" ;;
*) usage ;;
esac
