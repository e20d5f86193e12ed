"""A full disk is a state, not a crash: poulpe keeps running (or starts) on it, says so on /health, refuses jobs with
503 (nothing accepted is lost), and takes jobs again as soon as space returns, without a restart. A Redis out of
memory is the same state for the shared store."""

from __future__ import annotations

from pathlib import Path

import httpx
import redis.asyncio

from poulpe.settings import Settings
from tests.e2e.helpers import accepted, eventually, result, submit
from tests.mounts import Mounts, fill
from tests.poulpe_process import Poulpe
from tests.redis_server import RedisServer
from tests.serving import serving
from tests.target import Target


def health(client: httpx.Client) -> httpx.Response:
    return client.get("/health")


def says_writes_fail(answer: httpx.Response) -> bool:
    body = answer.json()
    return answer.status_code == 503 and body["ok"] is False and body["writable"] is False and "write" in body["error"]


def test_poulpe_restarted_on_a_full_disk_starts_refuses_jobs_and_recovers_when_space_returns(
    tmp_path: Path, mounts: Mounts, fresh_target: Target
) -> None:
    disk = mounts.tmpfs(tmp_path / "disk", "2m")
    proc = Poulpe(tmp_path / "p", "--data", str(disk / "poulpe.db"), "--workers", "2")
    try:
        proc.start()
        with proc.client() as client:
            accepted(client, id="before", method="GET", name=fresh_target.url(), delay=1)
        assert proc.terminate() == 0  # a clean stop: SQLite removes its -wal and -shm files
        filler = fill(disk)

        proc.start(healthy=False)
        with proc.client() as client:
            answer = health(client)
            assert says_writes_fail(answer), answer.text
            refused = submit(client, id="during", method="GET", name=fresh_target.url())
            assert refused.status_code == 503, refused.text
            assert proc.proc is not None and proc.proc.poll() is None  # still running

            filler.unlink()
            eventually(lambda: health(client).status_code == 200, timeout=30)
            assert health(client).json() == {"ok": True}
            accepted(client, id="after", method="GET", name=fresh_target.url())
            assert result(client, "after")["status"] == "succeeded"
            assert result(client, "before")["status"] == "succeeded"  # recovered once the store could be read
            assert client.get("/jobs/during").status_code == 404  # a 503 stored nothing
    finally:
        proc.stop()


def test_a_disk_that_fills_while_poulpe_runs_shows_on_health_until_space_returns(
    tmp_path: Path, mounts: Mounts, fresh_target: Target
) -> None:
    disk = mounts.tmpfs(tmp_path / "disk", "2m")
    proc = Poulpe(tmp_path / "p", "--data", str(disk / "poulpe.db"), "--workers", "2")
    try:
        proc.start()
        with proc.client() as client:
            accepted(client, id="first", method="GET", name=fresh_target.url())
            assert result(client, "first")["status"] == "succeeded"
            filler = fill(disk)
            big = {"pad": "x" * 200_000}  # more than the WAL file has room for: it must grow
            refused = [
                submit(client, id=f"full-{n}", method="POST", name=fresh_target.url(), params=big) for n in range(20)
            ]
            assert refused[-1].status_code == 503, refused[-1].text
            answer = health(client)
            assert says_writes_fail(answer), answer.text

            filler.unlink()
            eventually(lambda: health(client).status_code == 200, timeout=30)
            accepted(client, id="again", method="GET", name=fresh_target.url())
            assert result(client, "again")["status"] == "succeeded"
    finally:
        proc.stop()


async def test_a_redis_out_of_memory_shows_on_health_until_it_takes_writes_again(
    redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    admin = redis.asyncio.Redis(port=redis_server.port)
    settings = Settings(redis=redis_server.url, redis_prefix=redis_prefix, workers=2)
    try:
        async with serving(settings) as client:
            assert (await client.get("/health")).status_code == 200
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", "1")  # every write is refused: OOM
            job = {"method": "GET", "name": fresh_target.url()}
            refused = await client.post("/task_in_queue", json=job)
            assert refused.status_code == 503, refused.text
            answer = await client.get("/health")
            assert answer.status_code == 503 and answer.json()["writable"] is False, answer.text
            assert "cannot take writes" in answer.json()["error"]

            await admin.config_set("maxmemory", "0")
            assert (await client.get("/health")).status_code == 200
            taken = await client.post("/task_in_queue", json={**job, "wait": 20})
            assert taken.status_code == 200 and taken.json()["status"] == "succeeded", taken.text
    finally:
        await admin.config_set("maxmemory", "0")
        await admin.aclose()
