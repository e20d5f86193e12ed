#!/usr/bin/env bash
# Run poulpe from this checkout: ./scripts/run.sh [poulpe flags]
# Installs poulpe into .venv at the versions of requirements.lock (editable, so code changes need no reinstall),
# then execs it. A .venv that ./scripts/test.sh installed (the same versions, plus the test tools) is used as is.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

ensure_venv
is_installed requirements-test.lock || ensure_locked requirements.lock
exec "$VENV/bin/poulpe" "$@"
