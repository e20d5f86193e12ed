"""The frames one WebSocket has yet to send, bounded in size so that a client that stops reading costs little.

Acks and errors are never dropped: they always go in, and the socket's reader takes no new frame while the acks and
errors waiting pass the bound, so a client that sends without reading is slowed by TCP instead of growing poulpe.
A result that does not fit is skipped (it stays available at `GET /task_resp/{id}`); once the client has read enough
to make room, one `{"type": "dropped"}` notice names the skipped results, then results flow again (docs/api.md).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from poulpe.responses import encode

LIMIT_BYTES = 4 * 1024 * 1024
DROPPED_IDS_MAX = 10_000
DROPPED_SENTENCE = "results skipped because the client did not read them in time; fetch them with GET /task_resp/{id}"


class Outbox:
    def __init__(self, limit: int = LIMIT_BYTES) -> None:
        self.limit = limit
        self.size = 0  # every frame waiting, in characters (the frames are ASCII JSON)
        self.pinned = 0  # the acks and errors among them, which are never dropped
        self._frames: deque[tuple[str, bool]] = deque()
        self._dropped: list[str] = []
        self._dropped_count = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def put(self, frame: dict[str, Any]) -> None:
        """An ack or an error: always queued, whatever the size (the reader waits for room before the next frame)."""
        self._append(encode(frame).decode(), pinned=True)

    def offer(self, job_id: str, frame: dict[str, Any]) -> bool:
        """A result: queued if it fits, else skipped and remembered for the next "dropped" notice."""
        text = encode(frame).decode()
        if self.size + len(text) <= self.limit:
            self._append(text, pinned=False)
            return True
        self._dropped_count += 1
        if len(self._dropped) < DROPPED_IDS_MAX:
            self._dropped.append(job_id)
        return False

    async def get(self) -> str:
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        text, pinned = self._frames.popleft()
        self.size -= len(text)
        if pinned:
            self.pinned -= len(text)
            if not self.full:
                self._room.set()
        if self._dropped_count and self.size <= self.limit // 2:
            self._append(encode(self._notice()).decode(), pinned=True)
        return text

    @property
    def full(self) -> bool:
        """Whether the acks and errors waiting pass the bound: then the socket's reader waits for room()."""
        return self.pinned > self.limit

    async def room(self) -> None:
        await self._room.wait()

    def _append(self, text: str, *, pinned: bool) -> None:
        self._frames.append((text, pinned))
        self.size += len(text)
        if pinned:
            self.pinned += len(text)
            if self.full:
                self._room.clear()
        self._ready.set()

    def _notice(self) -> dict[str, Any]:
        notice = {
            "type": "dropped",
            "count": self._dropped_count,
            "ids": self._dropped,
            "truncated": self._dropped_count > len(self._dropped),
            "error": DROPPED_SENTENCE,
        }
        self._dropped, self._dropped_count = [], 0
        return notice
