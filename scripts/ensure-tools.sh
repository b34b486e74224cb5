#!/usr/bin/env bash
# Makes sure the tools the other scripts need are there, installing them where that is safe.
#   scripts/ensure-tools.sh [EXTRA...]                   check (and install) now, or
#   . scripts/ensure-tools.sh; ensure_tools [EXTRA...]   source it, so PATH changes reach the caller.
# Always: cargo, rustfmt, clippy, cargo lambda. EXTRA: cfn-lint, sam, aarch64 (the Lambda arm64 target).
# Silent when everything is present; exits 1 with instructions when it cannot fix something itself.
# (Sourcing defines a function instead of running, because a sourced file sees the caller's arguments.)
set -euo pipefail

_et_say() { echo "ensure-tools: $*" >&2; }
_et_die() { _et_say "$*"; exit 1; }

# Where rustup and `pip install --user` put binaries; a fresh shell may not have them on PATH yet.
for _et_dir in "$HOME/.cargo/bin" "$HOME/.local/bin"; do
  case ":$PATH:" in *":$_et_dir:"*) ;; *) PATH="$_et_dir:$PATH" ;; esac
done
export PATH

# pip install PKG: into the active virtualenv, system-wide as root, otherwise with --user.
_et_pip_install() {
  local pip
  if python3 -m pip --version >/dev/null 2>&1; then pip=(python3 -m pip)
  elif command -v pip3 >/dev/null; then pip=(pip3)
  else _et_die "pip is needed to install $1: sudo apt-get install python3-pip (macOS: brew install python)"
  fi
  _et_say "installing $1 with pip"
  if [ "$(id -u)" -eq 0 ] || [ -n "${VIRTUAL_ENV:-}" ]; then
    "${pip[@]}" install --quiet "$1"
  else
    "${pip[@]}" install --quiet --user "$1"
  fi || _et_die "'pip install $1' failed; install it another way (e.g. pipx install $1) and re-run"
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
  local extra
  for extra in "$@"; do
    case $extra in
      cfn-lint) command -v cfn-lint >/dev/null || _et_pip_install cfn-lint ;;
      sam) command -v sam >/dev/null || _et_pip_install aws-sam-cli ;;
      aarch64) # no `grep -q`: it would close the pipe early and make pipefail report a failure
        rustup target list --installed 2>/dev/null | grep -x aarch64-unknown-linux-gnu >/dev/null ||
          _et_rustup target add aarch64-unknown-linux-gnu ;;
      *) _et_die "unknown tool '$extra' (known: cfn-lint, sam, aarch64)" ;;
    esac
  done
}

# Run directly (not sourced): check now.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then ensure_tools "$@"; fi
