"""Saves sent together in one pipeline (`saves`, one script call for the run) leave Redis as the same saves sent one by
one: the records, every index and count, the keys' running counts, the announcements."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from typing import Any

from poulpe.errors import NotHeld
from poulpe.job import Job, Method, Status
from poulpe.store.redis import RedisStore
from poulpe.store.redis_link import namespace
from poulpe.store.redis_saves_fold import fold_saves, unfold_answers
from tests.redis_server import RedisServer

NOW = 1_700_000_000.0
TIMED = ("lease", "ks:")  # scored by the clock of the claim: compared without their scores


def job(n: int, key: str | None = None) -> Job:
    return Job(id=f"j{n}", method=Method.GET, name="http://127.0.0.1/x", seq=n, run_at=0.0, created_at=1.0, key=key)


def ended(j: Job, status: Status, at: float) -> Job:
    j.end_attempt(status is Status.SUCCEEDED, None if status is Status.SUCCEEDED else "boom", at)
    j.status = status
    if j.final:
        j.finished_at = at
    if status is Status.RETRYING:
        j.run_at = at + 60
    return j


async def story(a: RedisStore, other: RedisStore, together: bool) -> list[str]:
    """Seven jobs claimed (the seventh by another process), then their starts and ends saved; returns what the
    processes heard on `done`."""
    heard: list[str] = []
    connected = asyncio.Event()

    def hear(channel: str, payload: str) -> None:
        if channel == "done":
            heard.extend(payload.split())

    listening = asyncio.create_task(other.listen(hear, connected.set))
    await asyncio.wait_for(connected.wait(), 5)
    await a.add([job(1), job(2), job(3), job(4), job(5, "k"), job(6, "k"), job(7)])
    mine = {j.id: j for j in (await a.claim(6, lease=30, now=NOW)).jobs}
    [theirs] = (await other.claim(1, lease=30, now=NOW)).jobs
    j1, j2, j3, j4, j5, j6 = (mine[f"j{n}"] for n in range(1, 7))
    for j in (j1, j2, j3, j4, j5, j6):
        j.begin_attempt(0, "node", NOW + 1)
    theirs.begin_attempt(0, "node", NOW + 1)
    saves: list[Job] = []
    saves += [copy.deepcopy(j1), ended(j1, Status.SUCCEEDED, NOW + 2)]  # a start and its end in the same run
    saves += [
        j2,
        copy.deepcopy(j3),
        copy.deepcopy(j5),
        ended(j5, Status.DEAD, NOW + 2),
        ended(j6, Status.SUCCEEDED, NOW + 2),
    ]
    saves += [ended(j4, Status.RETRYING, NOW + 2)]  # goes back to wait: written as any single save
    saves += [ended(j3, Status.SUCCEEDED, NOW + 3), ended(theirs, Status.SUCCEEDED, NOW + 3)]  # the last is not a's
    if together:
        for j in saves[:-1]:
            a.save_soon(j)
    else:
        for j in saves[:-1]:
            await a.save(j)
    with contextlib.suppress(NotHeld):
        await a.save(saves[-1])
    for _ in range(100):
        if len(heard) >= 4:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    listening.cancel()
    return sorted(heard)


def dump(redis_server: RedisServer, base: str) -> dict[str, Any]:
    client = redis_server.client()
    out: dict[str, Any] = {}
    for name in client.scan_iter(match=base + "*"):
        short = name.decode()[len(base) :]
        kind = client.type(name).decode()
        if kind == "string":
            out[short] = client.get(name)
        elif kind == "hash":
            out[short] = client.hgetall(name)
        elif kind == "zset":
            scored = client.zrange(name, 0, -1, withscores=True)
            out[short] = [m for m, _ in scored] if short.startswith(TIMED) else scored
    return out


async def test_saves_sent_together_leave_redis_as_saves_sent_one_by_one(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    heard: dict[bool, list[str]] = {}
    for together in (False, True):
        prefix = f"{redis_prefix}{'together' if together else 'alone'}:"
        a = RedisStore(redis_server.url, prefix=prefix, owner="a")
        other = RedisStore(redis_server.url, prefix=prefix, owner="b")
        await a.open()
        await other.open()
        try:
            heard[together] = await story(a, other, together)
        finally:
            await a.close()
            await other.close()
    alone = dump(redis_server, namespace(f"{redis_prefix}alone:"))
    together = dump(redis_server, namespace(f"{redis_prefix}together:"))
    assert together == alone
    assert alone["count"] == {b"succeeded": b"3", b"dead": b"1", b"retrying": b"1", b"running": b"1", b"queued": b"1"}
    assert "krun" not in alone and "jkey" not in alone  # j5 and j6 ended: their key holds nothing now
    assert heard[True] == heard[False] == ["j1", "j3", "j5", "j6"]


def test_an_attempts_start_is_not_sent_when_its_end_follows_in_the_same_pipeline() -> None:
    def save(job_id: str, token: str = "a", held: str = "0") -> list[Any]:
        return [job_id, b"{}", "running", "0", 1, token, "", "", "due", held, "", 1, "0|1|", ""]

    ops: list[tuple[str, list[Any], Any]] = [
        ("save", save("j1"), None),  # j1's start: its end follows
        ("save", save("j2"), None),
        ("add", ["j9"], None),
        ("save", save("j1"), "waited"),
        ("save", save("j2", token="x:w:1"), None),  # another holder's write: both stay
        ("save", save("j3", held="1"), None),
        ("save", save("j3", held="1"), None),  # held writes (external workers) are compared in Redis: both stay
    ]
    runs = fold_saves(ops)
    assert [(name, carried) for name, _, carried in runs] == [("save", [1]), ("add", [2]), ("saves", [3, 4, 5, 6])]
    assert unfold_answers(runs, [1, "added", [1, 0, 1, 1]], len(ops)) == [None, 1, "added", 1, 0, 1, 1]
