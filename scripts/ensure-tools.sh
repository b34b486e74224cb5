#!/usr/bin/env bash
# Makes sure the tools the other scripts need are there, installing them where that is safe.
#   scripts/ensure-tools.sh [EXTRA...]                   check (and install) now, or
#   . scripts/ensure-tools.sh; ensure_tools [EXTRA...]   source it, so PATH changes reach the caller.
# Always: cargo, rustfmt, clippy, cargo lambda, and moto's server (Secrets Manager for the tests,
# which also brings botocore, whose SigV4 signatures the tests compare with the storage's).
# EXTRA: cfn-lint, sam, aarch64 (the Lambda arm64 target), node (Node.js 20+ with npm: checked only).
# Silent when everything is present; exits 1 with instructions when it cannot fix something itself.
# (Sourcing defines a function instead of running, because a sourced file sees the caller's arguments.)
set -euo pipefail

_et_say() { echo "ensure-tools: $*" >&2; }
_et_die() { _et_say "$*"; exit 1; }

# Python tools (cargo-lambda, moto, cfn-lint, the SAM CLI) live in a virtual environment of the
# project's own, so installing them changes nothing else on the machine.
ET_VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/tools/venv"

# Where rustup puts binaries (a fresh shell may not have it on PATH yet), and the venv's.
for _et_dir in "$HOME/.cargo/bin" "$ET_VENV/bin"; do
  case ":$PATH:" in *":$_et_dir:"*) ;; *) PATH="$_et_dir:$PATH" ;; esac
done
export PATH

# pip install PKG into the project's venv, creating it first if needed.
_et_pip_install() {
  if [ ! -x "$ET_VENV/bin/python" ]; then
    command -v python3 >/dev/null ||
      _et_die "python3 is needed to install $1: sudo apt-get install python3 python3-venv"
    _et_say "creating the project's Python environment in $ET_VENV"
    python3 -m venv "$ET_VENV" ||
      { rm -rf "$ET_VENV"; _et_die "python3 -m venv failed: sudo apt-get install python3-venv, then re-run"; }
  fi
  _et_say "installing $1 into $ET_VENV"
  "$ET_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$1" ||
    _et_die "'pip install $1' into $ET_VENV failed; see the message above"
  hash -r # forget cached command lookups so the new binary is found
}

_et_rustup() {
  command -v rustup >/dev/null || _et_die "rustup is needed to run: rustup $*  (see https://rustup.rs)"
  _et_say "rustup $*"
  rustup "$@"
}

ensure_tools() {
  command -v cargo >/dev/null || _et_die "cargo not found. Install Rust with rustup:
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh   (see https://rustup.rs)"
  cargo fmt --version >/dev/null 2>&1 || _et_rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || _et_rustup component add clippy
  if ! cargo lambda --version >/dev/null 2>&1; then
    _et_pip_install cargo-lambda
    cargo lambda --version >/dev/null 2>&1 ||
      _et_die "cargo-lambda installed but 'cargo lambda' does not run; is pip's bin dir on PATH?"
  fi
  [ -x "$ET_VENV/bin/moto_server" ] || _et_pip_install 'moto[server]'
  local extra
  for extra in "$@"; do
    case $extra in
      cfn-lint) command -v cfn-lint >/dev/null || _et_pip_install cfn-lint ;;
      sam) command -v sam >/dev/null || _et_pip_install aws-sam-cli ;;
      aarch64) # no `grep -q`: it would close the pipe early and make pipefail report a failure
        rustup target list --installed 2>/dev/null | grep -x aarch64-unknown-linux-gnu >/dev/null ||
          _et_rustup target add aarch64-unknown-linux-gnu ;;
      node)
        command -v npm >/dev/null && node -e "process.exit(Number(process.versions.node.split('.')[0]) < 20 ? 1 : 0)" ||
          _et_die "Node.js 20 or newer with npm is needed: sudo apt-get install nodejs npm (or https://nodejs.org)" ;;
      *) _et_die "unknown tool '$extra' (known: cfn-lint, sam, aarch64, node)" ;;
    esac
  done
}

# Run directly (not sourced): check now.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then ensure_tools "$@"; fi
