"""A dead job can always be read, retried or deleted, whatever the dead-letter directory's state: the store is the
truth. A letter the directory cannot take is owed (counted in /metrics) and written once it can; a letter that
cannot be removed is ignored, and removed once it can. The directory is a read-only bind mount or a full tmpfs."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from poulpe.settings import Settings
from tests.mounts import Mounts, fill
from tests.serving import serving
from tests.target import Target


async def soon(check: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:  # noqa: ASYNC109
    """Await `check` until it returns something truthy (returned) or `timeout` passes (the test fails)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"condition not met within {timeout}s (last value: {value!r})"
        await asyncio.sleep(0.1)


async def final(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    answer = await client.get(f"/task_resp/{job_id}", params={"timeout": 20})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def dies(client: httpx.AsyncClient, job_id: str, url: str) -> dict[str, Any]:
    """Submit a job with no retry to a failing target; it is dead once this returns."""
    answer = await client.post("/task_in_queue", json={"id": job_id, "method": "GET", "name": url, "retry": {"max": 0}})
    assert answer.status_code == 202, answer.text
    done = await final(client, job_id)
    assert done["status"] == "dead"
    return done


def letter(dead: Path, job: dict[str, Any]) -> Path:
    day = dt.datetime.fromtimestamp(job["finished_at"], dt.UTC).strftime("%Y-%m-%d")
    return dead / day / f"{job['id']}.json"


async def listed(client: httpx.AsyncClient) -> dict[str, str | None]:
    answer = await client.get("/dead", params={"size": 1000})
    assert answer.status_code == 200, answer.text
    return {item["id"]: item["file"] for item in answer.json()["dead"]}


async def metric(client: httpx.AsyncClient, name: str) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


def settings(tmp_path: Path, dead: Path) -> Settings:
    return Settings(data=tmp_path / "p.db", dead=dead, workers=2)


async def test_a_read_only_directory_lets_dead_jobs_be_retried_and_deleted(
    tmp_path: Path, mounts: Mounts, fresh_target: Target
) -> None:
    source = tmp_path / "dead-source"
    source.mkdir()
    dead = tmp_path / "dead"
    dead.mkdir()
    async with serving(settings(tmp_path, dead)) as client:
        # two jobs die while the directory is writable: their letters are written
        revived = await dies(client, "revived", fresh_target.url("/flaky/revived", fail=1))
        forgotten = await dies(client, "forgotten", fresh_target.url("/status/500"))
        assert letter(dead, revived).is_file() and letter(dead, forgotten).is_file()
        # the directory turns read-only (the letters stay readable)
        for path in dead.iterdir():
            (source / path.name).mkdir()
            for file in path.iterdir():
                (source / path.name / file.name).write_bytes(file.read_bytes())
        mounts.read_only(source, dead)

        retried = await client.post("/dead/revived/retry")
        assert retried.status_code == 202, retried.text
        done = await final(client, "revived")
        assert done["status"] == "succeeded" and done["attempts"] == 2
        again = await client.post("/dead/revived/retry")
        assert again.status_code == 404, again.text

        deleted = await client.delete("/dead/forgotten")
        assert deleted.status_code == 200, deleted.text
        assert (await client.get("/jobs/forgotten")).status_code == 404
        assert (await client.delete("/dead/forgotten")).status_code == 404

        # the letters are still on the read-only disk, but they no longer count as dead jobs
        assert letter(dead, revived).is_file() and letter(dead, forgotten).is_file()
        assert (await client.get("/dead/revived")).status_code == 404
        assert (await client.get("/dead/forgotten")).status_code == 404
        assert {"revived", "forgotten"}.isdisjoint(await listed(client))

        # writable again: the leftover letters go, without anyone asking
        mounts.writable(dead)
        await soon(lambda: _gone(letter(dead, revived), letter(dead, forgotten)))


async def _gone(*paths: Path) -> bool:
    return not any([await asyncio.to_thread(path.exists) for path in paths])


async def test_a_job_dying_while_the_directory_is_read_only_is_retriable_and_its_letter_written_later(
    tmp_path: Path, mounts: Mounts, fresh_target: Target
) -> None:
    source = tmp_path / "dead-source"
    source.mkdir()
    dead = mounts.read_only(source, tmp_path / "dead")
    async with serving(settings(tmp_path, dead)) as client:
        owed = await dies(client, "owed", fresh_target.url("/status/500"))
        await dies(client, "revived", fresh_target.url("/flaky/owed-revived", fail=1))
        assert await metric(client, "poulpe_dead_letters_owed") == 2
        assert await metric(client, "poulpe_dead_letter_write_errors_total") == 2
        assert await listed(client) == {"owed": None, "revived": None}  # dead, their letters not written yet
        shown = await client.get("/dead/owed")
        assert shown.status_code == 200 and shown.json()["status"] == "dead"

        retried = await client.post("/dead/revived/retry")
        assert retried.status_code == 202, retried.text
        assert (await final(client, "revived"))["status"] == "succeeded"
        assert await metric(client, "poulpe_dead_letters_owed") == 1

        mounts.writable(dead)
        written = await soon(lambda: _exists(letter(dead, owed)))
        assert written
        assert json.loads(letter(dead, owed).read_text())["status"] == "dead"
        assert await metric(client, "poulpe_dead_letters_owed") == 0
        assert await listed(client) == {"owed": letter(dead, owed).relative_to(dead).as_posix()}
        assert not list(dead.glob("*/revived.json"))  # it is no longer dead: no letter for it


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.is_file)


async def test_a_full_directory_owes_letters_leaves_no_temp_file_and_catches_up_when_space_returns(
    tmp_path: Path, mounts: Mounts, fresh_target: Target
) -> None:
    dead = mounts.tmpfs(tmp_path / "dead", "64k")
    async with serving(settings(tmp_path, dead)) as client:
        early = await dies(client, "early", fresh_target.url("/status/500"))  # its letter fits
        filler = fill(dead)
        big = {"pad": "x" * 20_000}  # a letter larger than what is left, smaller than the directory
        answer = await client.post(
            "/task_in_queue",
            json={
                "id": "late",
                "method": "POST",
                "name": fresh_target.url("/status/500"),
                "params": big,
                "retry": {"max": 0},
            },
        )
        assert answer.status_code == 202, answer.text
        late = await final(client, "late")
        assert late["status"] == "dead"
        assert await metric(client, "poulpe_dead_letters_owed") == 1
        assert not list(dead.rglob("*.tmp")) and not list(dead.rglob(".*"))  # no half letter left behind
        assert (await listed(client))["late"] is None

        deleted = await client.delete("/dead/early")  # removing a file needs no space
        assert deleted.status_code == 200 and not letter(dead, early).exists()
        shown = await client.get("/dead/late")
        assert shown.status_code == 200 and shown.json()["job"]["params"] == big

        filler.unlink()
        await soon(lambda: _exists(letter(dead, late)))
        assert await metric(client, "poulpe_dead_letters_owed") == 0
        assert json.loads(letter(dead, late).read_text())["params"] == big


async def test_letters_owed_when_poulpe_stopped_are_written_after_a_restart(
    tmp_path: Path, mounts: Mounts, fresh_target: Target
) -> None:
    source = tmp_path / "dead-source"
    source.mkdir()
    dead = mounts.read_only(source, tmp_path / "dead")
    async with serving(settings(tmp_path, dead)) as client:
        owed = await dies(client, "owed-at-stop", fresh_target.url("/flaky/owed-at-stop", fail=1))
        assert await metric(client, "poulpe_dead_letters_owed") == 1
    mounts.writable(dead)
    assert not letter(dead, owed).exists()

    async with serving(settings(tmp_path, dead)) as client:
        await soon(lambda: _exists(letter(dead, owed)))
        assert await metric(client, "poulpe_dead_letters_owed") == 0
        assert await listed(client) == {"owed-at-stop": letter(dead, owed).relative_to(dead).as_posix()}
        retried = await client.post("/dead/owed-at-stop/retry")
        assert retried.status_code == 202
        assert (await final(client, "owed-at-stop"))["status"] == "succeeded"
        assert not await _exists(letter(dead, owed))


async def test_a_letter_left_behind_by_a_retry_is_removed_after_a_restart(
    tmp_path: Path, mounts: Mounts, fresh_target: Target
) -> None:
    dead = tmp_path / "dead"
    async with serving(settings(tmp_path, dead)) as client:
        job = await dies(client, "left-behind", fresh_target.url("/flaky/left-behind", fail=1))
        path = letter(dead, job)
        assert await _exists(path)
        source = tmp_path / "dead-source"
        (source / path.parent.name).mkdir(parents=True)
        (source / path.parent.name / path.name).write_bytes(path.read_bytes())
        mounts.read_only(source, dead)
        assert (await client.post("/dead/left-behind/retry")).status_code == 202
        assert (await final(client, "left-behind"))["status"] == "succeeded"
    mounts.unmount_all()  # the directory writable again (the letter written before the mount is under it)
    assert await _exists(path)

    async with serving(settings(tmp_path, dead)) as client:
        await soon(lambda: _gone(path))
        assert "left-behind" not in await listed(client)
        assert (await client.get("/jobs/left-behind")).json()["status"] == "succeeded"


async def test_a_retry_the_store_cannot_take_changes_nothing(
    tmp_path: Path, mounts: Mounts, fresh_target: Target
) -> None:
    disk = mounts.tmpfs(tmp_path / "disk", "2m")
    dead = tmp_path / "dead"
    async with serving(Settings(data=disk / "p.db", dead=dead, workers=2)) as client:
        job = await dies(client, "unchanged", fresh_target.url("/flaky/unchanged", fail=1))
        filler = fill(disk)
        for _ in range(3):  # whatever the WAL still had room for is used up
            await client.post(
                "/task_in_queue", json={"method": "POST", "name": fresh_target.url(), "params": {"p": "x" * 300_000}}
            )
        refused = await client.post("/dead/unchanged/retry")
        assert refused.status_code == 503, refused.text
        assert (await client.get("/dead/unchanged")).json()["status"] == "dead"
        assert await _exists(letter(dead, job))  # nothing changed: still dead, its letter still there

        filler.unlink()
        await soon(lambda: _healthy(client))
        retried = await client.post("/dead/unchanged/retry")
        assert retried.status_code == 202, retried.text
        assert (await final(client, "unchanged"))["status"] == "succeeded"
        assert not await _exists(letter(dead, job))


async def _healthy(client: httpx.AsyncClient) -> bool:
    return (await client.get("/health")).status_code == 200
