"""The Service owns start, drain and stop, in one written order: built here in-process from Settings, as the
server builds it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from poulpe.job import Job, Method, Status
from poulpe.service import Service
from poulpe.settings import Settings
from tests.target import Target


def settings(tmp_path: Path, **flags: object) -> Settings:
    return Settings(data=tmp_path / "jobs.db", dead=tmp_path / "dead", **flags)  # type: ignore[arg-type]


async def running(service: Service, job_id: str) -> None:
    for _ in range(500):
        job = await service.manager.get(job_id)
        if job is not None and job.status is Status.RUNNING:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{job_id} did not start")


async def test_a_drain_answers_long_polls_at_once_and_lets_the_running_attempt_finish(
    tmp_path: Path, fresh_target: Target
) -> None:
    service = Service(settings(tmp_path, workers=1, grace=10.0))
    await service.start()
    manager = service.manager
    slow = Job(id="slow", method=Method.GET, name=fresh_target.url("/slow", ms=1500, key="svc"))
    later = Job(id="later", method=Method.GET, name=fresh_target.url("/echo"), run_at=time.time() + 60)
    later.status = Status.SCHEDULED
    try:
        await manager.submit([slow, later])
        await running(service, "slow")
        long_poll = asyncio.create_task(manager.wait("later", 300))
        await asyncio.sleep(0.05)

        drain = asyncio.create_task(service.drain())
        answered = await asyncio.wait_for(long_poll, 2)  # the long-poll answers with the state, not after 300 s
        assert answered is not None and answered.status is Status.SCHEDULED
        assert not manager.accepting and not drain.done()  # the running attempt has its grace
        await asyncio.wait_for(drain, 10)
        assert (await manager.get("slow")).status is Status.SUCCEEDED  # type: ignore[union-attr]
    finally:
        await service.stop()

    again = Service(settings(tmp_path, workers=1))
    await again.start()  # what was left is stored: the scheduled job is still there after a restart
    try:
        assert (await again.manager.get("later")).status is Status.SCHEDULED  # type: ignore[union-attr]
        assert [call.job_id for call in fresh_target.calls] == ["slow"]
    finally:
        await again.stop()


async def test_a_drain_asked_by_the_server_and_the_lifespan_runs_once(tmp_path: Path) -> None:
    service = Service(settings(tmp_path))
    await service.start()
    manager = service.manager
    stops: list[float] = []
    stop = manager.stop

    async def counted(grace: float) -> None:
        stops.append(grace)
        await stop(grace)

    manager.stop = counted  # type: ignore[method-assign]
    await asyncio.gather(service.drain(), service.drain(), service.stop())
    await service.stop()  # a second stop is harmless
    assert stops == [30.0]


async def test_a_service_never_started_stops_quietly(tmp_path: Path) -> None:
    service = Service(settings(tmp_path))
    await service.drain()
    await service.stop()
