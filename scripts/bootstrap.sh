#!/usr/bin/env bash
# Shared set-up for scripts/run.sh and scripts/test.sh: sourced, not run.
# Gives: ROOT, VENV, step, die, apt_install, ensure_debian_packages, ensure_venv, is_installed, ensure_locked.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
is_root() { [[ $(id -u) -eq 0 ]]; }

# apt-get install PACKAGE... (one update first); only root can, anyone else gets told what to run.
apt_install() {
  is_root && command -v apt-get >/dev/null 2>&1 \
    || die "missing $*: install it first (sudo apt-get install $*), or run this as root on Debian"
  step "apt-get install $*"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# Install the Debian packages whose command is missing. Each argument is "command" or
# "command:package" when the package is named otherwise.
ensure_debian_packages() {
  local entry missing=()
  for entry in "$@"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
  done
  ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
}

# Create .venv with python3 >= 3.11. A .venv whose python no longer runs (copied from
# another machine, python upgraded) is rebuilt rather than trusted.
ensure_venv() {
  [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c '' 2>/dev/null && return 0
  command -v python3 >/dev/null 2>&1 || die "python3 (3.11 or newer) is not installed"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "python3 is $(python3 -V 2>&1); poulpe needs 3.11 or newer"
  step "create $VENV"
  if ! python3 -m venv --clear "$VENV"; then
    # Debian ships venv without ensurepip; python3-venv brings it.
    apt_install python3-venv
    python3 -m venv --clear "$VENV"
  fi
}

# Is .venv installed from LOCK (a file in the project root) as it is now? A stamp holds the hash of the lock
# and pyproject.toml, so a second run starts at once and a changed lock installs again.
lock_hash() { cat "$ROOT/$1" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1; }
is_installed() {
  local stamp="$VENV/.poulpe-stamp-$1"
  [[ -f "$stamp" && $(<"$stamp") == $(lock_hash "$1") ]]
}

# Install the exact versions of LOCK into .venv (never newer ones: the lock is what CI was green with), then
# poulpe itself, editable and without resolving anything again. ./scripts/lock.sh refreshes the locks.
ensure_locked() {
  local lock=$1
  is_installed "$lock" && return 0
  step "pip install -r $lock"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/$lock"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$ROOT"
  lock_hash "$lock" >"$VENV/.poulpe-stamp-$lock"
}
