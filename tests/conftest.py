"""Shared fixtures: a real HTTP target, and poulpe started as a subprocess the way a user starts it."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.mounts import Mounts
from tests.poulpe_process import Poulpe
from tests.redis_server import RedisServer
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
def poulpe(tmp_path: Path) -> Iterator[Callable[..., Poulpe]]:
    """Start poulpe with extra flags: `poulpe("--workers", "2")`; every process is stopped after the test."""
    started: list[Poulpe] = []

    def start(*flags: str, env: dict[str, str] | None = None, token: str | None = None, home: str = "p") -> Poulpe:
        proc = Poulpe(tmp_path / home, *flags, env=env, token=token)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("POULPE_LOG_LEVEL", "info")
