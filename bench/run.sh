#!/usr/bin/env bash
# The whole bench in one command: ./bench/run.sh [--quick] [measurement ...]
# Installs what it needs (Debian's wrk when missing and root; poulpe and bench/requirements.txt into .venv),
# then runs `python -m bench` with the same arguments. See docs/BENCHMARKS.md for what it measures.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/bootstrap.sh"

ensure_debian_packages wrk
ensure_venv
ensure_installed -e .
step "pip install -r bench/requirements.txt"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/bench/requirements.txt"

cd "$ROOT"
export BENCH_COMMAND="./bench/run.sh${*:+ $*}"
exec "$VENV/bin/python" -m bench "$@"
