"""Errors poulpe raises on purpose; app.py maps them to HTTP answers in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class PoulpeError(Exception):
    """An error a client caused or can act on. `field` names the job field at fault, when there is one."""

    status = 500

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_json(self) -> dict[str, str | None]:
        return {"result": "Fail", "error": self.message, "field": self.field}


class BadRequest(PoulpeError):
    status = 400


class Unauthorized(PoulpeError):
    status = 401


class NotFound(PoulpeError):
    status = 404


class Conflict(PoulpeError):
    status = 409


class NotHeld(Conflict):
    """Another poulpe process holds the job's lease (it claimed the job): this process may not change it."""


class PayloadTooLarge(PoulpeError):
    status = 413


class UnsupportedMediaType(PoulpeError):
    status = 415


class Unavailable(PoulpeError):
    """The store cannot be reached or poulpe is shutting down: nothing was accepted, the client retries."""

    status = 503


class StoreUnavailable(Unavailable):
    pass


class OutcomeUnknown(StoreUnavailable):
    """A write left for the store and its reply was lost: the jobs may or may not be stored (SPEC 2.3).

    The answer carries their ids (`id`, or `ids` in order for a batch, None for a slot that was not valid), so that
    a retry with those ids is safe: it answers the stored job as a duplicate, or stores it.
    """

    def __init__(self, message: str, ids: Sequence[str | None], *, batch: bool = False) -> None:
        super().__init__(message)
        self.ids = list(ids)
        self.batch = batch

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {**super().to_json(), "stored": "unknown"}
        if self.batch:
            answer["ids"] = self.ids
        else:
            answer["id"] = self.ids[0] if self.ids else None
        return answer


class SettingsError(ValueError):
    """A flag has a value poulpe cannot run with; the message names the flag (settings.py, kafka_flags.py)."""
