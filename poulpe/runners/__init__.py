"""Runners carry out one attempt of a job. Expected failures are values (an Outcome), not exceptions."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

import msgspec

from poulpe.job import Job

BODY_CAP = 64 * 1024


class Outcome(msgspec.Struct, omit_defaults=True):
    """What one attempt gave.

    `ok`: the attempt succeeded. `result`: the runner's output for the result JSON (SPEC 3.1).
    `error`: why it failed, one sentence. `retry_after`: a delay the target asked for (HTTP Retry-After).
    `final`: a retry cannot help (an SMTP 5xx, a program that no longer exists): the job dies at once.
    """

    ok: bool
    result: Any = None
    error: str | None = None
    retry_after: float | None = None
    final: bool = False


class Runner(Protocol):
    def run(self, job: Job, attempt: int, timeout: float) -> Awaitable[Outcome]: ...

    async def close(self) -> None: ...
