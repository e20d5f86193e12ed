"""The ordering rule of due jobs, written once.

Among jobs a worker may take: the highest priority first; among equal priorities, keys take turns (ready.py);
within a key, due time, then acceptance order. `rank` is that last part as a sort key, built once per job; the
due-time heap (timer.py), the ready structure and the Redis claim sort by it and by nothing else.
"""

from __future__ import annotations

from poulpe.job import Job

Rank = tuple[float, int, str]


def rank(job: Job) -> Rank:
    """Due time, then acceptance order (the id only breaks ties between processes' clocks)."""
    return (job.run_at, job.seq, job.id)


def rank_at(run_at: float, seq: int, job_id: str) -> Rank:
    """The rank of a job known by its fields only (recovery reads no more than these)."""
    return (run_at, seq, job_id)


def in_order(jobs: list[Job]) -> list[Job]:
    return sorted(jobs, key=rank)
