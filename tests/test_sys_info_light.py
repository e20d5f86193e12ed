"""/sys_info stays light however many dead jobs the store holds: its id lists come from indexes, never from the
records, so the dashboard's poll every 2 s costs next to nothing."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from poulpe.job import Job, Method, Status
from poulpe.settings import Settings
from poulpe.store.sqlite import SqliteStore
from tests.serving import serving


async def bury(path: Path, n: int, result_size: int) -> None:
    """A store holding `n` dead jobs, each with a large last result (a target's 64 KiB answer)."""
    store = SqliteStore(path)
    await store.open()
    now = time.time()
    body = "x" * result_size
    for start in range(0, n, 200):
        jobs = [
            Job(
                id=f"dead-{k}",
                method=Method.POST,
                name="http://127.0.0.1:9/hook",
                status=Status.DEAD,
                seq=k + 1,
                created_at=now,
                run_at=now,
                finished_at=now,
                result={"status_code": 500, "headers": {}, "body": body, "elapsed_ms": 1.0},
                error="HTTP 500",
            )
            for k in range(start, min(n, start + 200))
        ]
        await store.add(jobs)
    await store.close()


async def test_sys_info_with_2000_large_dead_jobs_answers_in_under_50_ms(tmp_path: Path) -> None:
    await bury(tmp_path / "p.db", 2000, 64 * 1024)
    # these jobs went straight into the store, without letters: a --dead path that cannot be a directory keeps poulpe
    # from writing 128 MB of owed letters during the test (the letters are not this test's subject)
    (tmp_path / "not-a-directory").touch()
    settings = Settings(data=tmp_path / "p.db", dead=tmp_path / "not-a-directory" / "dead", workers=2)
    async with serving(settings) as client:
        first = await client.get("/sys_info")
        assert first.status_code == 200
        info = first.json()
        assert info["counts"]["dead"] == 2000
        assert len(info["failed"]) == 1000 and info["truncated"] is True
        assert info["failed"][:2] == ["dead-1999", "dead-1998"]  # the most recent first
        took = []
        for _ in range(10):
            started = time.perf_counter()
            answer = await client.get("/sys_info")
            took.append(time.perf_counter() - started)
            assert answer.status_code == 200
    assert statistics.median(took) < 0.050, took
