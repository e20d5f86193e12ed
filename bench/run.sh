#!/usr/bin/env bash
# The whole bench in one command: ./bench/run.sh [--quick] [measurement ...]
# Installs what it needs (Debian's wrk when missing and root; poulpe at the lock's versions and bench/requirements.txt into .venv),
# then runs `python -m bench` with the same arguments. See docs/BENCHMARKS.md for what it measures.
# The soak is a command of its own, run as root, not in CI (30 min of load with a fault a minute; bench/soak.py):
#   .venv/bin/python -m bench.soak --minutes 30
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/bootstrap.sh"

ensure_debian_packages wrk redis-server
ensure_venv
is_installed requirements-test.lock || ensure_locked requirements.lock
step "pip install -r bench/requirements.txt"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/bench/requirements.txt"

# arq, the Redis peer, needs redis-py < 6: it gets a venv of its own (bench/arq_peer.py).
if [[ ! -x "$ROOT/.venv-arq/bin/arq" ]]; then
  step "create .venv-arq (arq, the peer of the Redis measurement)"
  python3 -m venv "$ROOT/.venv-arq"
  "$ROOT/.venv-arq/bin/python" -m pip install --quiet --disable-pip-version-check "arq==0.28.0" "aiohttp>=3.10,<4"
fi

# The other HTTP clients and ASGI servers measured beside poulpe's (bench/clients.py, bench/servers.py): a venv of
# their own, so none of them comes near poulpe's locked dependencies.
if [[ ! -x "$ROOT/.venv-peers/bin/granian" ]]; then
  step "create .venv-peers (aiosonic, curl-cffi, rnet, granian: the peers of the client and server measurements)"
  python3 -m venv "$ROOT/.venv-peers"
  "$ROOT/.venv-peers/bin/python" -m pip install --quiet --disable-pip-version-check "aiosonic==1.3.3" \
    "curl-cffi==0.17.0" "rnet==2.4.2" "granian==2.8.7" "aiohttp>=3.10,<4" starlette msgspec uvicorn httptools
fi

cd "$ROOT"
export BENCH_COMMAND="./bench/run.sh${*:+ $*}"
exec "$VENV/bin/python" -m bench "$@"
