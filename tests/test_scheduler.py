"""The due-time heap: entries come out in due order, an earlier arrival re-arms the timer, nothing polls."""

from __future__ import annotations

import asyncio
import time

from poulpe.dispatch.timer import Entry, Timer


async def test_entries_come_due_in_order_and_an_earlier_one_wakes_it_early() -> None:
    fired: list[Entry] = []
    got = asyncio.Event()

    def on_due(entries: list[Entry]) -> None:
        fired.extend(entries)
        got.set()

    scheduler = Timer(on_due)
    scheduler.start()
    now = time.time()
    scheduler.add((now + 30, 1, "late"))
    scheduler.add((now + 0.05, 2, "soon"))  # arrives after, due before: the timer must move
    await asyncio.wait_for(got.wait(), 2)
    assert [e[2] for e in fired] == ["soon"]
    assert len(scheduler) == 1 and scheduler.peek_ids(5) == ["late"]
    scheduler.stop()


async def test_past_entries_fire_at_once_in_due_then_acceptance_order() -> None:
    fired: list[str] = []
    done = asyncio.Event()
    scheduler = Timer(lambda es: (fired.extend(e[2] for e in es), done.set()))
    scheduler.extend([(5.0, 2, "b"), (5.0, 1, "a"), (1.0, 9, "first")])
    scheduler.start()
    await asyncio.wait_for(done.wait(), 2)
    assert fired == ["first", "a", "b"]
    scheduler.stop()


async def test_no_room_holds_entries_until_poked() -> None:
    fired: list[str] = []
    room = [1]

    def on_due(entries: list[Entry]) -> None:
        fired.extend(e[2] for e in entries)
        room[0] = 0

    scheduler = Timer(on_due, room=lambda: room[0])
    scheduler.extend([(1.0, 1, "a"), (2.0, 2, "b")])
    scheduler.start()
    await asyncio.sleep(0.05)
    assert fired == ["a"]  # the second waits: no room
    room[0] = 5
    scheduler.poke()
    await asyncio.sleep(0.05)
    assert fired == ["a", "b"]
    scheduler.stop()
