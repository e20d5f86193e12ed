"""The `poulpe` command's server sets the garbage collector for serving (poulpe/server.py): young collections far
apart, and what start-up built frozen out of every collection once poulpe serves."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from poulpe.cli import settings_from
from poulpe.server import YOUNG_GC, build_server
from tests.poulpe_process import free_port


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """This test process's collector as it was: the server under test sets it for the whole process."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


async def serve_once(home: Path, *, tune_gc: bool) -> tuple[tuple[int, int, int], int]:
    """Start a server as `poulpe` builds it, take a job, and say how the collector stood while it served."""
    port = free_port()
    flags = ["--port", str(port), "--data", str(home / "poulpe.db"), "--dead", str(home / "dead")]
    server = build_server(settings_from(flags), tune_gc=tune_gc)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:
                assert not task.done(), "poulpe stopped before it started"
                await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            job = {"method": "GET", "name": "http://127.0.0.1:9/never", "delay": 3600}
            answer = await client.post("/task_in_queue", json=job)
            assert answer.status_code == 202, answer.text
        return gc.get_threshold(), gc.get_freeze_count()
    finally:
        server.should_exit = True
        await task


async def test_the_poulpe_server_collects_young_objects_less_often_and_freezes_what_start_up_built(
    tmp_path: Path, collector_restored: None
) -> None:
    threshold, frozen = await serve_once(tmp_path, tune_gc=True)
    assert threshold[0] == YOUNG_GC
    assert frozen > 10_000  # the modules, the app and its parts: walked by no collection while poulpe serves


async def test_a_server_built_without_the_setting_leaves_the_collector_alone(
    tmp_path: Path, collector_restored: None
) -> None:
    before = gc.get_threshold()
    threshold, frozen = await serve_once(tmp_path, tune_gc=False)
    assert threshold == before
    assert frozen == 0
