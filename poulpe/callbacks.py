"""Callbacks (SPEC 2.1 `callback`): when a job is final, its result JSON is POSTed to its callback URL.

A delivery is one try plus retries on the job's own retry policy; a 2xx answer is a delivery. It never changes the
job's status: how it went is recorded in the job's `callback_delivery` after each try (attempts, last status code
or error, when it was delivered). Deliveries run in this process only: one still pending when poulpe stops is not
sent again after a restart (its `callback_delivery` shows the tries made so far).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp

from poulpe.dispatch.events import JobFinal
from poulpe.job import FINAL, CallbackDelivery, Job
from poulpe.manager import JobManager
from poulpe.outbound import host_allowed, signature
from poulpe.responses import encode
from poulpe.settings import Secret

log = logging.getLogger("poulpe.callbacks")


class Callbacks:
    def __init__(
        self,
        manager: JobManager,
        *,
        allow_hosts: tuple[str, ...] = (),
        signing_key: Secret | None = None,
        version: str = "0.1.0",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.manager = manager
        self.allow_hosts = allow_hosts
        self.version = version
        self.clock = clock
        self._key = signing_key.reveal().encode() if signing_key else None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unlisten: Callable[[], None] | None = None

    def start(self) -> None:
        self._unlisten = self.manager.events.on(JobFinal, lambda event: self._on_final(event.job))

    async def stop(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _on_final(self, job: Job) -> None:
        if job.callback is None or job.status not in FINAL:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, job: Job) -> None:
        assert job.callback is not None
        result = job.to_result()
        result.pop("callback_delivery", None)
        body = encode(result)
        policy = job.policy(self.manager.default_retry)
        delivery = CallbackDelivery()
        while True:
            delivery.attempts += 1
            delivery.status_code, delivery.error = await self._post(job, job.callback, body, delivery.attempts)
            if delivery.error is None:
                delivery.delivered_at = self.clock()
            with contextlib.suppress(Exception):  # a store that is down loses the record, never the delivery
                await self.manager.set_callback_delivery(job.id, delivery)
            if delivery.error is None:
                log.info("job %s callback delivered attempt=%d", job.id, delivery.attempts)
                return
            if delivery.attempts >= policy.max_attempts:
                log.warning("job %s callback failed after %d attempts: %s", job.id, delivery.attempts, delivery.error)
                return
            await asyncio.sleep(policy.delay_before_retry(delivery.attempts))

    async def _post(self, job: Job, url: str, body: bytes, attempt: int) -> tuple[int | None, str | None]:
        """(status code, None) when delivered; (status code or None, why not) otherwise."""
        if not host_allowed(url, self.allow_hosts):
            return None, "the callback's host is not in --allow_hosts"
        headers = {
            "User-Agent": f"poulpe/{self.version}",
            "Content-Type": "application/json",
            "Poulpe-Job-Id": job.id,
            "Poulpe-Attempt": str(attempt),
        }
        if self._key is not None:
            headers["Poulpe-Signature"] = signature(self._key, body)
        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        try:
            async with asyncio.timeout(job.timeout or self.manager.job_timeout):
                async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                    await resp.read()
        except TimeoutError:
            return None, "the callback timed out"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return None, f"the callback could not be sent ({type(exc).__name__})"
        if 200 <= resp.status < 300:
            return resp.status, None
        return resp.status, f"the callback answered HTTP {resp.status}"
