"""A bulk action (SPEC 10.4): what it does, to which jobs, and how far it got. The record the stores keep."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Kind = Literal["retry", "cancel", "delete", "run_now"]


class Action(msgspec.Struct, kw_only=True):
    """The matched ids are stored once beside it, in the order they are acted on; `done` counts those handled
    (acted on, or refused and counted in `errors`), and moves in chunks."""

    id: str
    action: Kind
    filter: dict[str, Any]
    total: int
    done: int = 0
    errors: int = 0
    created_at: float
    finished_at: float | None = None
    last_error: str | None = None

    def state(self) -> dict[str, Any]:
        """GET /actions/{id}."""
        return {
            "id": self.id,
            "action": self.action,
            "filter": self.filter,
            "total": self.total,
            "matched": self.total,
            "done": self.done,
            "errors": self.errors,
            "finished": self.finished_at is not None,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            **({"last_error": self.last_error} if self.last_error else {}),
        }


class Progress(msgspec.Struct, omit_defaults=True):
    """What moves as an action runs (stored beside the record, which never changes)."""

    done: int = 0
    errors: int = 0
    finished_at: float | None = None
    last_error: str | None = None


_encode = msgspec.json.Encoder().encode


def encode_ids(ids: list[str]) -> bytes:
    return _encode(ids)


def decode_ids(data: bytes | str) -> list[str]:
    return msgspec.json.decode(data, type=list[str])
