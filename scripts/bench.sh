#!/usr/bin/env bash
# The benchmark (README "Benchmarks"): prints tables of figures, each with its target and
# whether it holds; it asserts no times. Usage: scripts/bench.sh [--baseline REV]
# With --baseline REV (a commit, branch or tag) it also builds REV in a worktree of its own
# under target/baseline and prints each figure before (REV) and after (this tree): binary
# sizes, the operation table (REV's benchmark and this one's, run one after the other on the
# same server) and, within one run, cold starts and memory with the two binaries alternated.
# Builds the release functions and the arm64 Lambda bootstraps, then runs
# shared/lambda/benches/operations.rs and shared/lambda/benches/lambda.rs against a throwaway PostgreSQL
# (a DATABASE_URL in your environment is ignored: the benchmark writes a million rows).
# About 6 to 12 minutes on 2 cores, most of it compiling.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/ensure-tools.sh
. scripts/ensure-tools.sh
ensure_tools aarch64

baseline=
case "${1:-}" in
  --baseline) [ $# -eq 2 ] || { echo "usage: $0 [--baseline REV]" >&2; exit 2; }; baseline=$2 ;;
  "") ;;
  *) echo "usage: $0 [--baseline REV]" >&2; exit 2 ;;
esac

target_dir=${CARGO_TARGET_DIR:-target}
mib() { awk -v bytes="$1" 'BEGIN { printf "%.2f MiB", bytes / 1048576 }'; }

echo "== Machine"
echo "$(nproc) CPUs: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
echo "$(uname -sr), $(rustc --version)"
echo "load average (1, 5, 15 min) before building: $(cut -d ' ' -f 1-3 /proc/loadavg)"

echo
echo "== Building (release functions, benchmarks, arm64 bootstraps)"
cargo build --release -q -p storage -p cleanup
cargo bench -q -p lti-storage-lambda --bench operations --bench lambda --no-run
cargo lambda build --release --arm64 -q


# The baseline: REV checked out under target/baseline/src (removed at exit), built into
# target/baseline/target (kept, so a second run rebuilds only what changed).
base_src= base_target= base_bench_package=
if [ -n "$baseline" ]; then
  rev=$(git rev-parse --verify --quiet "$baseline^{commit}") || { echo "bench.sh: no commit $baseline" >&2; exit 2; }
  base_src=$PWD/$target_dir/baseline/src base_target=$PWD/$target_dir/baseline/target
  git worktree remove --force "$base_src" 2>/dev/null || rm -rf "$base_src"
  git worktree prune
  git worktree add --detach --quiet "$base_src" "$rev"
  trap 'git worktree remove --force "$base_src"' EXIT
  # Before the crate split, the benchmarks were lti-storage's.
  base_bench_package=lti-storage-lambda
  [ -d "$base_src/shared/lambda/benches" ] || base_bench_package=lti-storage
  echo
  echo "== Building the baseline, $baseline ($(git rev-parse --short "$rev"))"
  (
    cd "$base_src"
    export CARGO_TARGET_DIR=$base_target
    cargo build --release -q -p storage -p cleanup
    cargo bench -q -p "$base_bench_package" --bench operations --no-run
    cargo lambda build --release --arm64 -q
  )
fi

size_of() { # bootstrap label
  local size; size=$(stat -c %s "$1")
  printf '%-10s %-9s %9d bytes  %s (%s gzipped)\n' "$2" "$3" "$size" "$(mib "$size")" \
    "$(mib "$(gzip -c "$1" | wc -c)")"
}
echo
echo "== Binary size: cargo lambda build --release --arm64 (target/lambda/FUNCTION/bootstrap)"
for function in storage cleanup; do
  [ -z "$baseline" ] || size_of "$base_target/lambda/$function/bootstrap" "$function" before
  size_of "$target_dir/lambda/$function/bootstrap" "$function" "${baseline:+after}"
done

# Always a throwaway server (pg-cluster.sh: fsync, synchronous_commit and full_page_writes off).
unset DATABASE_URL TEST_DATABASE_URL
# Operation latencies run on one CPU, with their PostgreSQL: on a VM, waking a process on
# another, idle vCPU costs tens of microseconds at random, which would swamp the figures.
pin=() where="on any CPU (taskset not found)"
if command -v taskset >/dev/null; then pin=(taskset -c 0) where="together on CPU 0 (taskset)"; fi
echo
echo "== Operation latency (in-process: Request::from_payload + Storage::handle)"
echo "The benchmark and its PostgreSQL run $where."
if [ -z "$baseline" ]; then
  "${pin[@]}" scripts/with-postgres.sh cargo bench -q -p lti-storage-lambda --bench operations
else
  # Both tables on one server, one after the other; each row's ÷ bare is against the bare
  # round trip measured beside it, so the two are comparable though the machine drifts.
  tables=$target_dir/baseline/tables
  mkdir -p "$tables"
  # shellcheck disable=SC2016 # expanded by the inner shell
  "${pin[@]}" scripts/with-postgres.sh bash -c '
    set -euo pipefail
    echo "-- before ($1)"
    # A benchmark from before the cleanup op stops at it, after its first table.
    (cd "$2" && CARGO_TARGET_DIR=$3 cargo bench -q -p "$4" --bench operations) | tee "$5/before" ||
      echo "(the baseline'"'"'s benchmark stopped early: the rows it printed are compared)"
    echo "-- after"
    cargo bench -q -p lti-storage-lambda --bench operations | tee "$5/after"
  ' bash "$baseline" "$base_src" "$base_target" "$base_bench_package" "$tables"
  echo
  echo "-- before → after, each table's rows by operation: median µs, ÷ bare and ÷ raw"
  scripts/compare-tables.awk "$tables/before" "$tables/after"
fi
echo
echo "== The functions under a Lambda Runtime API emulator (release binaries, any CPU)"
BASELINE_BIN=${base_target:+$base_target/release} \
  scripts/with-postgres.sh cargo bench -q -p lti-storage-lambda --bench lambda
echo "load average (1, 5, 15 min) at the end: $(cut -d ' ' -f 1-3 /proc/loadavg)"
echo "bench.sh: done in ${SECONDS}s"
