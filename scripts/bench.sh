#!/usr/bin/env bash
# The benchmark (README "Benchmarks"): prints tables of figures, each with its target and
# whether it holds; it asserts no times. Usage: scripts/bench.sh
# Builds the release functions and the arm64 Lambda bootstraps, then runs
# shared/lambda/benches/operations.rs and shared/lambda/benches/lambda.rs against a throwaway PostgreSQL
# (a DATABASE_URL in your environment is ignored: the benchmark writes a million rows).
# About 6 to 12 minutes on 2 cores, most of it compiling.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/ensure-tools.sh
. scripts/ensure-tools.sh
ensure_tools aarch64

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

echo
echo "== Binary size: cargo lambda build --release --arm64"
for function in storage cleanup; do
  bootstrap=$target_dir/lambda/$function/bootstrap
  size=$(stat -c %s "$bootstrap")
  printf '%-34s %9d bytes  %s (%s gzipped)\n' "$bootstrap" "$size" "$(mib "$size")" \
    "$(mib "$(gzip -c "$bootstrap" | wc -c)")"
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
"${pin[@]}" scripts/with-postgres.sh cargo bench -q -p lti-storage-lambda --bench operations
echo
echo "== The functions under a Lambda Runtime API emulator (release binaries, any CPU)"
scripts/with-postgres.sh cargo bench -q -p lti-storage-lambda --bench lambda
echo "load average (1, 5, 15 min) at the end: $(cut -d ' ' -f 1-3 /proc/loadavg)"
echo "bench.sh: done in ${SECONDS}s"
