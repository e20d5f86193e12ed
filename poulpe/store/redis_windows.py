"""The Redis store's part of bursts and windows (SPEC 10.2): what the `add` script needs of a unique window, and the
debounce script. A window is a Redis string that expires with it (PX), so no entry outlives its window."""

from __future__ import annotations

from typing import Any

from poulpe.job import Job


def unique_args(job: Job) -> list[Any]:
    """The unique key and the window in whole milliseconds (at least 1), or '' and 0 for a job without one."""
    if job.unique is None or job.unique_until is None:
        return ["", 0]
    return [job.unique, max(1, round((job.unique_until - job.created_at) * 1000))]
