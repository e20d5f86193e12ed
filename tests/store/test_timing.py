"""An operator reads `poulpe_store_operation_seconds{op}` and `poulpe_store_errors_total{op}`: every backend times
each operation of the contract itself (store/timing.py), once per call the manager makes, failures counted."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import poulpe.store
from poulpe.errors import StoreUnavailable
from poulpe.job import Status
from poulpe.metrics import Metrics
from poulpe.store.base import Store
from tests.store.test_contract import BACKENDS, make

CONTRACT = sorted(
    name
    for name, member in inspect.getmembers(Store)
    if not name.startswith("_") and name not in ("open", "close") and inspect.iscoroutinefunction(member)
)


def backends() -> list[type[Store]]:
    """Every Store subclass poulpe has, found by importing each store module."""
    for module in pkgutil.iter_modules(poulpe.store.__path__):
        importlib.import_module(f"poulpe.store.{module.name}")
    found, todo = [], [Store]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("poulpe."):
                found.append(sub)
    return found


def test_every_operation_of_every_backend_times_itself() -> None:
    assert len(CONTRACT) == 37
    kinds = backends()
    assert {kind.__name__ for kind in kinds} >= {"SqliteStore", "RedisStore", "PartitionedStore"}
    untimed = [
        f"{kind.__name__}.{op} ({inspect.getsourcefile(getattr(kind, op))})"
        for kind in kinds
        for op in CONTRACT
        if f'with self._timed("{op}"):' not in inspect.getsource(getattr(kind, op))
    ]
    assert not untimed, f"each operation opens `with self._timed(its name):` (store/timing.py): {untimed}"


def samples(metrics: Metrics) -> dict[tuple[str, str], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, s.labels.get("op", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("poulpe_store_")
    }


@pytest.mark.parametrize("backend", sorted(BACKENDS))
async def test_each_call_is_one_sample_of_its_operation_and_a_failure_counts_as_an_error(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = BACKENDS[backend](request, tmp_path)
    await store.open()
    metrics = Metrics()
    metrics.time_store(store)
    job = make("timed-1", 1)
    try:
        await store.add([job])
        job.status = Status.SUCCEEDED
        job.finished_at = time.time()
        await store.save(job)
        assert (await store.get("timed-1")) is not None
        await store.get("timed-2")
        await store.counts()
    finally:
        await store.close()
    with pytest.raises(StoreUnavailable):
        await store.get("timed-1")  # the store is closed
    seen = samples(metrics)
    assert seen[("poulpe_store_operation_seconds_count", "add")] == 1  # not once more per partition on --partitions
    assert seen[("poulpe_store_operation_seconds_count", "save")] == 1
    assert seen[("poulpe_store_operation_seconds_count", "get")] == 3
    assert seen[("poulpe_store_operation_seconds_count", "counts")] == 1
    assert seen[("poulpe_store_operation_seconds_sum", "add")] > 0
    assert seen[("poulpe_store_errors_total", "get")] == 1
    assert seen[("poulpe_store_errors_total", "add")] == 0
    assert ("poulpe_store_operation_seconds_count", "purge") not in seen  # a series appears with its first call
