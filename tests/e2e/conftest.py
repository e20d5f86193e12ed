"""Fixtures for the end-to-end tests: a module that defines `proc` (its own poulpe) gets a `client` for it; the Kafka
tests share one broker of each kind (noida-db and Tansu) and take fresh topics and a fresh group per test, and a test
that stops its broker starts its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.kafka_broker import KINDS, Broker
from tests.kafka_client import Topics, create_topics
from tests.poulpe_process import Poulpe
from tests.serving import ServedPoulpe


@pytest.fixture
def client(proc: Poulpe | ServedPoulpe) -> Iterator[httpx.Client]:
    with proc.client(timeout=60) as client:  # above the 30 s long-polls the tests make
        yield client


@pytest.fixture(scope="session", params=KINDS)
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A Kafka-protocol broker of each kind, for every Kafka test; a test that stops its broker starts its own."""
    server = Broker(request.param, tmp_path_factory.mktemp(request.param)).start()
    yield server
    server.stop()


@pytest.fixture
async def topics(broker: Broker) -> Topics:
    fresh = Topics.fresh()
    await create_topics(broker.servers, fresh)
    return fresh


@pytest.fixture
def own_noida(tmp_path: Path) -> Iterator[Broker]:
    """A noida-db broker of the test's own, since the test stops it. Only noida-db: Tansu keeps everything in memory,
    so a restarted Tansu has no topics, messages or committed offsets, and the story of a broker that comes back
    cannot be told on it."""
    server = Broker("noida", tmp_path / "own-noida").start()
    yield server
    server.stop()
