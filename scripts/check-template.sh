#!/usr/bin/env bash
# Checks the deployment without AWS: cfn-lint and `sam validate --lint` on template.yaml and the
# example tool's examples/lti-tool/template.yaml, that
# a deploy changing only a parameter moves both aliases to a new version (scripts/check-versions.py,
# with the SAM translator), then `sam build`, and that it produced an arm64 `bootstrap` for both
# functions.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/ensure-tools.sh
. scripts/ensure-tools.sh
ensure_tools cfn-lint sam aarch64

# Linting needs a region but no credentials.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" SAM_CLI_TELEMETRY=0
cfn-lint template.yaml examples/lti-tool/template.yaml
sam validate --lint
sam validate --lint --template examples/lti-tool/template.yaml
# The SAM CLI's own Python, where its translator and cfn-lint are.
"$ET_VENV/bin/python" scripts/check-versions.py template.yaml

# sam build writes its build.toml beside the build directory: both go in one temporary
# directory, removed on exit.
work_dir=$(mktemp -d "${TMPDIR:-/tmp}/sam-build.XXXXXX")
trap 'rm -rf "$work_dir"' EXIT
build_dir="$work_dir/build"
sam build --build-dir "$build_dir"
# The two storage functions (classic and Managed Instances) share one build,
# StorageFunction-Shared; the cleanup function has its own.
for dir in StorageFunction-Shared CleanupFunction; do
  binary="$build_dir/$dir/bootstrap"
  [ -f "$binary" ] || { echo "check-template: sam build made no $dir/bootstrap" >&2; exit 1; }
  # ELF e_machine (2 bytes at offset 18, little-endian): 183 is AArch64.
  machine=$(od -An -t u2 -j 18 -N 2 "$binary" | tr -d ' ')
  [ "$machine" = 183 ] || { echo "check-template: $binary is not an arm64 binary (e_machine $machine)" >&2; exit 1; }
  echo "check-template: $dir/bootstrap is arm64, $(stat -c %s "$binary") bytes"
done
