#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml's ranges: ./scripts/lock.sh [--upgrade]
# requirements-test.lock: runtime and test packages, what ./scripts/test.sh installs;
# requirements.lock: the runtime packages alone at the same versions, what ./scripts/run.sh and the Dockerfile install.
# After a refresh, run ./scripts/test.sh: commit the new locks only once the suite is green on them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

ensure_venv
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
cd "$ROOT"
compile() { "$VENV/bin/python" -m uv pip compile --quiet --universal --python-version 3.11 --no-header "$@"; }
compile pyproject.toml --extra test "$@" -o requirements-test.lock
# the runtime lock takes its versions from the test lock, so both install the same packages
compile pyproject.toml -c requirements-test.lock -o requirements.lock
echo "wrote requirements-test.lock and requirements.lock" >&2
