"""Fixtures for the end-to-end tests: a module that defines `proc` (its own poulpe) gets a `client` for it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.poulpe_process import Poulpe


@pytest.fixture
def client(proc: Poulpe) -> Iterator[httpx.Client]:
    with proc.client(timeout=60) as client:  # above the 30 s long-polls the tests make
        yield client
