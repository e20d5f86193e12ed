"""The SQLite store's unique windows at intake: what each open window leaves in memory."""

from __future__ import annotations

import gc
from pathlib import Path

from poulpe.store.sqlite import SqliteStore
from tests.store.test_windows_contract import windowed


def containers_within(root: object) -> int:
    """The objects the collector walks (containers it tracks) that `root` holds, however deep."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        for ref in gc.get_referents(todo.pop()):
            if gc.is_tracked(ref) and not isinstance(ref, type) and id(ref) not in seen:
                seen.add(id(ref))
                todo.append(ref)
    return len(seen)


async def test_open_unique_windows_leave_the_garbage_collector_nothing_to_walk(tmp_path: Path) -> None:
    # Every job of a busy intake may take a window for minutes: a container per window (a tuple) would count
    # towards the collector's passes, a third more of them, each walking the windows again.
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    gc.disable()  # a pass would untrack what it can, and hide the containers made per window
    try:
        await store.add([windowed(f"j{n}", n, f"key-{n}", 600) for n in range(1, 1001)])
        for n in range(1001, 1101):  # one at a time, as single-job requests come
            await store.add([windowed(f"j{n}", n, f"key-{n}", 600)])
        assert len(store.windows.unique.open) == 1100
        assert containers_within(store.windows.unique) < 10, "a container per open window"
    finally:
        gc.enable()
        await store.close()


async def test_the_windows_a_busy_moment_opens_share_one_place_among_the_ends(tmp_path: Path) -> None:
    # A busy intake opens thousands of windows a second, each ending at its own instant: kept by the tenth of a
    # second, they cost one heap entry together, not one each, and they still end (test_windows_contract.py).
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    try:
        for n in range(1, 501):  # one at a time, as single-job requests come, each accepted at its own instant
            await store.add([windowed(f"j{n}", n, f"key-{n}", 600)])
        assert len(store.windows.unique.open) == 500
        assert len(store.windows.unique._ends._heap) <= 20, "a heap entry per window"
    finally:
        await store.close()
