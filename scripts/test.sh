#!/usr/bin/env bash
# Check this checkout as CI does: ./scripts/test.sh [pytest args]
# Installs requirements-test.lock (and poulpe, editable) into .venv and the Debian servers the suite starts, then runs
# ruff, ruff format, mypy and pytest, stopping at the first step that fails.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

# Servers the suite starts for real (never mocked, never Docker): one line each,
# "command" or "command:debian-package".
DEBIAN_PACKAGES=(
  openssl  # the mail tests make a TLS certificate with `openssl req`
  redis-server  # the Redis store's tests start their own redis-server
  redis-cli:redis-tools  # the Redis Cluster tests join their 6 nodes with `redis-cli --cluster create`
  chromium  # the dashboard tests drive Debian's headless Chromium with Playwright (never a downloaded browser)
)

ensure_venv
ensure_locked requirements-test.lock
ensure_debian_packages "${DEBIAN_PACKAGES[@]}"

cd "$ROOT"
# Tests find the venv's tools (poulpe, hadolint) on PATH.
export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV"
# Bytecode is written, whatever the environment says: each pytest worker imports every test module through pytest's
# assertion rewriting, and the suite starts hundreds of poulpe processes; without cached bytecode each of them compiles
# the same sources again (about 5 s of CPU per worker's collection, docs/design.md "Tests").
unset PYTHONDONTWRITEBYTECODE

# The whole suite (no test path given, as CI runs it) goes on six workers, a file per worker at a time (module
# fixtures start once); a run of named tests stays in one process. `-n 0` after it runs the suite in one process.
# Six on two cores: on a clean clone two workers took about 8 minutes, four 4.2 to 4.5, six 3.8; with six the run is
# bound by CPU, not by waits (docs/design.md "Tests").
args=(-n 6 --dist loadfile)
for arg in "$@"; do
  [[ -e ${arg%%::*} ]] && args=()
done
args+=("$@")

# For the whole suite, the bytecode (rewritten test modules included) is made once, by one collection beside ruff and
# mypy (which use one core), instead of by each of the six workers at once on a fresh checkout.
warm=''
if ((${#args[@]} > 0)) && [[ ${args[0]} == -n ]]; then
  { python -m compileall -q poulpe && pytest --collect-only -q -p no:cacheprovider; } >/dev/null 2>&1 &
  warm=$!
fi

lint_dirs=()
for dir in poulpe tests bench; do
  [[ -d $dir ]] && lint_dirs+=("$dir")
done

step "ruff check ${lint_dirs[*]}"
ruff check "${lint_dirs[@]}"
step "ruff format --check ${lint_dirs[*]}"
ruff format --check "${lint_dirs[@]}"
step "mypy"
mypy
[[ -z $warm ]] || wait "$warm" || true  # a collection error shows in pytest's own run below
step "pytest ${args[*]}"
status=0
pytest "${args[@]}" || status=$?
# pytest exits 5 when it collected no tests: for CI that is a failure, not a pass.
((status != 5)) || die "pytest collected no tests"
exit "$status"
