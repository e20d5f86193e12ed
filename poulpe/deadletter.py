"""Dead letters: one JSON file per dead job, `DIR/<UTC day of death>/<id>.json` (the Rust poulpe's layout).

Files are written atomically (temp file, fsync, rename, fsync the directory), so a reader or a crash never sees
half a letter, and a write that fails (a full disk) leaves no temp file behind. The store holds the truth about
which jobs are dead (poulpe/deadjobs.py); the letters are the copy people and tools read, and the only record left
of a dead job once the store forgets it (--result_ttl). An operator may move or delete files by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from poulpe.job import Job, decode_job, encode_job

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # used with fullmatch: `$` would let a final newline through


class DeadLetters:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.write_errors = 0

    async def write(self, job: Job) -> Path:
        """Write the job's full record; raises OSError when the directory cannot be written."""
        return await asyncio.to_thread(self._write, job)

    def _write(self, job: Job) -> Path:
        when = job.finished_at or dt.datetime.now(dt.UTC).timestamp()
        folder = self.root / dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{job.id}.json"
        temp = folder / f".{job.id}.{uuid.uuid4().hex}.tmp"
        data = msgspec.json.format(encode_job(job), indent=2)
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, final)
        except OSError:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            raise
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return final

    def _find(self, job_id: str) -> Path | None:
        if not _ID.fullmatch(job_id) or not self.root.is_dir():
            return None
        for day in sorted(self._days(), reverse=True):
            path = self.root / day / f"{job_id}.json"
            if path.is_file():
                return path
        return None

    def _days(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [entry.name for entry in os.scandir(self.root) if entry.is_dir() and _DAY.match(entry.name)]

    async def read(self, job_id: str) -> Job | None:
        def read() -> Job | None:
            path = self._find(job_id)
            return decode_job(path.read_bytes()) if path else None

        return await asyncio.to_thread(read)

    async def remove(self, job_id: str) -> bool:
        """Remove the job's letter (every copy, whatever its day); False when there was none. Raises OSError when
        the directory cannot be written."""

        def remove() -> bool:
            found = False
            while (path := self._find(job_id)) is not None:
                path.unlink(missing_ok=True)
                found = True
            return found

        return await asyncio.to_thread(remove)

    async def remove_many(self, job_ids: Sequence[str]) -> dict[str, OSError]:
        """`remove` for many jobs in one hand-off to a thread (a bulk retry's chunk): the days are listed once.
        Answers the error of each letter that could not be removed."""

        def remove() -> dict[str, OSError]:
            failed: dict[str, OSError] = {}
            days = self._days()
            for job_id in job_ids:
                if not _ID.fullmatch(job_id):
                    continue
                for day in days:
                    try:
                        (self.root / day / f"{job_id}.json").unlink()
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        failed[job_id] = exc
            return failed

        return await asyncio.to_thread(remove)

    async def entries(self) -> list[dict[str, Any]]:
        """Every letter, newest day first, one per job id (its newest): each {"id", "day", "file"}."""

        def scan() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            seen: set[str] = set()
            for day in sorted(self._days(), reverse=True):
                for name in sorted(e.name for e in os.scandir(self.root / day) if e.name.endswith(".json")):
                    job_id = name[: -len(".json")]
                    if job_id not in seen:
                        seen.add(job_id)
                        items.append({"id": job_id, "day": day, "file": f"{day}/{name}"})
            return items

        return await asyncio.to_thread(scan)
