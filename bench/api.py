"""The few poulpe routes the bench drives, through one aiohttp session."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import msgspec

_encoder = msgspec.json.Encoder()
JSON = {"Content-Type": "application/json"}


class ServerError(RuntimeError):
    """poulpe answered 5xx."""


class PoulpeClient:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session
        self.server_errors: list[str] = []  # 5xx answers seen while polling: a finding, reported with the figures

    async def submit(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST a batch; every slot must be accepted (202), or this raises."""
        async with self.session.post(f"{self.url}/task_in_queue", data=_encoder.encode(jobs), headers=JSON) as resp:
            body = await resp.read()
            if resp.status != 202:
                raise RuntimeError(f"batch refused: {resp.status} {body[:300]!r}")
        answers: list[dict[str, Any]] = msgspec.json.decode(body)
        return answers

    async def submit_copies(self, job: dict[str, Any], n: int, *, batch: int = 1000) -> None:
        """POST n copies of one job, `batch` a request, one request after the other."""
        for first in range(0, n, batch):
            await self.submit([job] * min(batch, n - first))

    async def get(self, path: str) -> Any:
        async with self.session.get(f"{self.url}{path}") as resp:
            body = await resp.read()
            if resp.status >= 500:
                raise ServerError(f"GET {path}: {resp.status} {body[:300]!r}")
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: {resp.status} {body[:300]!r}")
        return msgspec.json.decode(body)

    async def finished_today(self) -> int:
        today = (await self.get("/sys_info"))["today"]
        return int(today["succeeded"]) + int(today["failed"])

    async def wait_finished(self, n: int, *, within: float, interval: float = 0.2) -> float:
        """Poll /sys_info until `n` jobs ended today (succeeded or dead); returns the time.monotonic() it saw it.

        A 5xx answer is recorded in `server_errors` and polling goes on (until `within` seconds have passed)."""
        deadline = time.monotonic() + within
        done = 0
        while True:
            try:
                done = await self.finished_today()
            except ServerError as exc:
                self.server_errors.append(str(exc))
            if done >= n:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {done} of {n} jobs ended within {within:.0f} s")
            await asyncio.sleep(interval)

    def report_errors(self, notes: list[str], label: str) -> None:
        if self.server_errors:
            notes.append(
                f"**{label}: poulpe answered {len(self.server_errors)} of the /sys_info polls with a 5xx** (first:"
                f" {self.server_errors[0][:160]}); see its log."
            )

    async def succeeded_jobs(self, n: int) -> list[dict[str, Any]]:
        """Every succeeded job, newest first, read 1,000 per page."""
        jobs: list[dict[str, Any]] = []
        for page in range(1, n // 1000 + 2):
            found = (await self.get(f"/jobs?status=succeeded&size=1000&page={page}"))["jobs"]
            jobs.extend(found)
            if len(found) < 1000:
                break
        return jobs


def session(connections: int = 64) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections), timeout=aiohttp.ClientTimeout(total=120)
    )
