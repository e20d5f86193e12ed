"""Errors poulpe raises on purpose; app.py maps them to HTTP answers in one place."""

from __future__ import annotations


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
