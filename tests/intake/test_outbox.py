"""The WebSocket outbox: acks always queued and in order, results skipped past the bound and named in one notice."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from poulpe.intake.outbox import Outbox


async def drain(outbox: Outbox) -> list[dict[str, Any]]:
    frames = []
    while outbox.size:
        frames.append(json.loads(await outbox.get()))
    return frames


def result(n: int) -> dict[str, Any]:
    return {"type": "result", "id": f"r{n}", "result": {"body": "x" * 900}}


async def test_results_past_the_bound_are_skipped_and_named_once_room_returns() -> None:
    outbox = Outbox(limit=10_000)
    for n in range(30):
        outbox.put({"type": "ack", "id": f"r{n}", "status": "queued"})
    kept = [n for n in range(30) if outbox.offer(f"r{n}", result(n))]
    assert 0 < len(kept) < 30 and outbox.size <= 10_000
    frames = await drain(outbox)
    assert [f["id"] for f in frames if f["type"] == "ack"] == [f"r{n}" for n in range(30)]
    assert [f["id"] for f in frames if f["type"] == "result"] == [f"r{n}" for n in kept]
    [notice] = [f for f in frames if f["type"] == "dropped"]
    assert notice["ids"] == [f"r{n}" for n in range(30) if n not in kept]
    assert (notice["count"], notice["truncated"]) == (30 - len(kept), False)
    assert frames[-1] == notice
    assert outbox.offer("r99", result(99)), "results flow again once the notice is out"


async def test_only_acks_and_errors_past_the_bound_hold_the_reader() -> None:
    outbox = Outbox(limit=1_000)
    for n in range(50):
        outbox.offer(f"r{n}", result(n))  # results never make the outbox "full": they are skipped instead
    assert not outbox.full
    for n in range(30):
        outbox.put({"type": "ack", "id": f"a{n}", "status": "queued"})
    assert outbox.full
    room = asyncio.create_task(outbox.room())
    await asyncio.sleep(0)
    assert not room.done()
    await drain(outbox)
    await asyncio.wait_for(room, 1)
