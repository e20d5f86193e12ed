#!/usr/bin/env bash
# Run poulpe from this checkout: ./scripts/run.sh [poulpe flags]
# Installs poulpe into .venv (editable, so code changes need no reinstall), then execs it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

ensure_venv
ensure_installed -e .
exec "$VENV/bin/poulpe" "$@"
