"""Shared fixtures: a real HTTP target, and poulpe started as a subprocess the way a user starts it, or served in the
test's own process when the test needs no process boundary (signals, kill -9, restarts, start-up, the CLI)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.nodeid import coerce_node_id  # pytest offers no public way to give an item its id

from tests.mounts import Mounts
from tests.poulpe_process import Poulpe
from tests.redis_server import RedisServer
from tests.serving import ServedPoulpe
from tests.started import P, Started
from tests.target import Target

PROGRAMS = Path(__file__).parent / "programs"


@pytest.fixture(scope="session")
def target() -> Iterator[Target]:
    server = Target()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session; each test keeps to a key prefix of its own (see `redis_prefix`)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> str:
    return f"t{abs(hash(request.node.nodeid)) % 10**10}:"


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    """Mount small failing file systems (tests/mounts.py); all are unmounted when the test ends."""
    if os.geteuid() != 0:
        pytest.skip("mounting is impossible here: the tests do not run as root")
    made = Mounts()
    try:
        yield made
    finally:
        made.unmount_all()


@pytest.fixture
def fresh_target(target: Target) -> Target:
    target.reset()
    return target


@pytest.fixture
def exec_dir(tmp_path: Path) -> Path:
    return copy_programs(tmp_path / "bin")


def copy_programs(folder: Path) -> Path:
    """A directory of programs for EXEC jobs: a copy of tests/programs with the executable bits set."""
    folder.mkdir()
    for program in PROGRAMS.iterdir():
        if program.is_file():
            copy = folder / program.name
            copy.write_bytes(program.read_bytes())
            copy.chmod(copy.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


@pytest.fixture
def poulpe(tmp_path: Path) -> Iterator[Started[Poulpe]]:
    """Start poulpe as a subprocess with extra flags: `poulpe("--workers", "2")`; all are stopped after the test."""
    started = Started(Poulpe, tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Started[ServedPoulpe]]:
    """Like `poulpe`, served in the test's process (tests/serving.py): for tests that need no process boundary."""
    started = Started(ServedPoulpe, tmp_path)
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def module_poulpe(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Started[Poulpe]]:
    """Like `poulpe`, for a process the tests of one module share (each test uses job ids of its own)."""
    yield from _shared_by_module(Poulpe, request, tmp_path_factory)


@pytest.fixture(scope="module")
def module_served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Started[ServedPoulpe]]:
    """Like `served`, for a poulpe the tests of one module share (each test uses job ids of its own)."""
    yield from _shared_by_module(ServedPoulpe, request, tmp_path_factory)


def _shared_by_module(
    kind: type[P], request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Started[P]]:
    started = Started(kind, tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]))
    yield started
    started.stop_all()


# The longest files first, longest at the head: with `--dist loadfile` (scripts/test.sh runs the whole suite so) each
# worker takes the next file when it is free, so the long ones run while the others get through the short ones,
# instead of one of them coming last. The order is the files' summed test time in a full run (`--durations=0`, summed
# by file; docs/design.md "Tests"). test_dockerfile.py comes seventh, so on six workers it runs after the image's build
# on the same worker, never beside it (two pip installs at once ran past its timeout): each worker gets a file, then a
# second one at once when its first has at most two tests left, as the build's single test leaves it. Nor does it come
# at the very end, where its minute of pip would be the run's tail.
LONGEST_FIRST = (
    "test_docker_image.py",
    "test_schemathesis.py",
    "test_redis_shared.py",
    "test_chains.py",
    "test_keys_redis.py",
    "test_kafka_faults.py",
    "test_dockerfile.py",
    "test_cron_restarts.py",
    "test_kafka.py",
    "test_exec_uvloop.py",
    "test_redis_cluster.py",
    "test_bursts.py",
    "test_websocket.py",
    "test_actions.py",
    "test_dashboard.py",
    "test_redis_faults.py",
    "test_batches.py",
    "test_bursts_redis.py",
    "test_keys.py",
    "test_durability.py",
    "test_connections.py",
    "test_alerts.py",
    "test_span_export_process.py",
    "test_kafka_close.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the order within each stays
    for item in items:
        # schemathesis gives its tests, one per API operation, the same node id: pytest-xdist keys tests by node
        # id, so on two workers only the first operation was fuzzed. The id gets the operation, as the name has it.
        if not item.nodeid.endswith(f"::{item.name}"):
            item._id = coerce_node_id(f"{item.nodeid.rsplit('::', 1)[0]}::{item.name}")


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("POULPE_LOG_LEVEL", "info")
    # pytest-xdist hands out files by their number of tests, most first, unless told to keep the order above: a file
    # with one test of a minute would come last and hold the run while the other worker waits
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
