"""A batch (SPEC 10.3): jobs submitted together whose completion is told once. The record the stores keep."""

from __future__ import annotations

from typing import Any

import msgspec

MAX_JOBS = 10_000


class Batch(msgspec.Struct, kw_only=True):
    """The counters change in the same store write as each of its jobs' final state (never by scanning the jobs);
    `finished_at` is set once, by the write that brings `pending` to 0."""

    id: str
    total: int
    pending: int
    succeeded: int = 0
    dead: int = 0
    cancelled: int = 0
    created_at: float
    finished_at: float | None = None
    on_complete: dict[str, Any] | None = None  # a job object, `"$batch"` as its params filled in at completion
    callback: str | None = None
    labels: dict[str, str] | None = None
    key: str | None = None  # the callback job's key: a tenant's batch tells its end under the tenant's key

    def state(self) -> dict[str, Any]:
        """GET /batches/{id}; also what `"$batch"` becomes and what the callback receives."""
        return {
            "id": self.id,
            "total": self.total,
            "pending": self.pending,
            "succeeded": self.succeeded,
            "dead": self.dead,
            "cancelled": self.cancelled,
            "done": self.finished_at is not None,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            **({"labels": self.labels} if self.labels else {}),
        }


class Extras(msgspec.Struct, omit_defaults=True):
    """What a store keeps of a batch beside its counters."""

    on_complete: dict[str, Any] | None = None
    callback: str | None = None
    labels: dict[str, str] | None = None
    key: str | None = None


def extras(batch: Batch) -> bytes:
    return msgspec.json.encode(Extras(batch.on_complete, batch.callback, batch.labels, batch.key))


def with_extras(batch: Batch, data: bytes | str) -> Batch:
    found = msgspec.json.decode(data, type=Extras)
    batch.on_complete, batch.callback = found.on_complete, found.callback
    batch.labels, batch.key = found.labels, found.key
    return batch
