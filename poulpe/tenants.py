"""The manager as one token sees it (SPEC 10.7): a tenant's jobs only, and the token's quotas on submissions.

A tenant's job ids live in its own namespace: `<tenant>:<id>`. A submitted id without that prefix gets it
(`order-42` becomes `pay:order-42`, a generated one `pay:<uuid>`), and an id in a path is read the same way, so a
tenant may write either form and can never name another tenant's job: `other:x` is read as `pay:other:x`, which
does not exist, and answers 404 exactly as an unknown id. Ids cannot collide across tenants, and no route needs a
check of its own: every read, action, long-poll and WebSocket push goes through an id of the namespace, and every
listing and count is asked for the prefix. A tenant's job without a `key` gets `tenant:<name>`, and its own keys
live under `tenant:<name>/`, so tenants take turns for the workers (SPEC 10.1) and never share a key's limits.
A batch (SPEC 10.3) is the tenant's as its jobs are: its id in the namespace, its jobs and completion the tenant's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import Any

from poulpe.batch_record import Batch
from poulpe.chain_refs import descendants
from poulpe.errors import BadRequest
from poulpe.job import WAITING, Job, Status
from poulpe.quotas import Buckets, TooMany
from poulpe.store.base import Page
from poulpe.tokens import Principal

UNFINISHED = (*sorted(WAITING), Status.RUNNING)
_MAX = 128  # the longest id or key (SPEC 2.1, 10.1)
_BATCH_MAX = 100  # the longest batch id (poulpe/batches.py): room for `.complete` and `.callback`
TODAY_SCAN = 10_000


class Scoped:
    """Wraps a JobManager for one request; what it does not override is the manager's own."""

    __slots__ = ("_manager", "buckets", "home", "prefix", "principal", "quotas", "tenant")

    def __init__(self, manager: Any, principal: Principal, buckets: Buckets) -> None:
        self._manager = manager
        self.principal = principal
        self.buckets = buckets
        self.tenant = principal.tenant
        self.prefix = f"{principal.tenant}:" if principal.tenant else ""
        self.home = f"tenant:{principal.tenant}"  # its jobs' default key
        self.quotas = principal.rate is not None or principal.max_pending is not None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)

    def over(self, manager: Any, buckets: Buckets) -> bool:
        """Whether this view wraps these (one view serves every request of its token: poulpe/token_file.py)."""
        return self._manager is manager and self.buckets is buckets

    @property
    def controls(self) -> Any:
        """Keys' limits (SPEC 10.1): a tenant's own keys only."""
        return TenantKeys(self._manager.controls, self.tenant) if self.tenant else self._manager.controls

    def own(self, job_id: str) -> str:
        """The id in this tenant's namespace (unchanged without a tenant)."""
        return job_id if job_id.startswith(self.prefix) else self.prefix + job_id

    # --- submissions -----------------------------------------------------------------------------------------
    def submit(self, jobs: Sequence[Job]) -> Awaitable[list[tuple[Job, bool]]]:
        """The manager's submit, awaited as it is, after the tenant's ids and keys are claimed (a plain function:
        every submission of a tenant's token comes through here, and a coroutine of its own costs each one)."""
        if self.tenant:
            for job in jobs:
                self._claim(job)
        if self.quotas:
            return self._submit_within_quotas(jobs)
        submitted: Awaitable[list[tuple[Job, bool]]] = self._manager.submit(jobs)
        return submitted

    async def _submit_within_quotas(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        await self._within_quotas(len(jobs))
        result: list[tuple[Job, bool]] = await self._manager.submit(jobs)
        return result

    def _claim(self, job: Job) -> None:
        job.id = self.own(job.id)
        if len(job.id) > _MAX:
            raise BadRequest(f"id must be at most {_MAX - len(self.prefix)} characters for tenant {self.tenant}", "id")
        assert self.tenant is not None
        job.key = self.home if job.key is None else own_key(self.tenant, job.key)
        if job.then or job.on_failure:
            for child in descendants([*(job.then or ()), *(job.on_failure or ())]):  # a chain's children (SPEC 10.3)
                self._claim_object(child)
        if len(job.key) > _MAX:
            raise BadRequest(
                f"key must be at most {_MAX - len(self.tenant) - 8} characters for tenant {self.tenant}", "key"
            )
        if job.unique is not None:  # windows (SPEC 10.2) are the tenant's own too: a twin job elsewhere is no duplicate
            job.unique = self.prefix + job.unique
        if job.debounce is not None:
            job.debounce = self.prefix + job.debounce

    def _claim_object(self, obj: dict[str, Any]) -> None:
        """A job object submitted later (a chain's child, a batch's on_complete): its given id and its key."""
        assert self.tenant is not None
        if isinstance(obj.get("id"), str):
            obj["id"] = self.own(obj["id"])
        obj["key"] = own_key(self.tenant, obj.get("key") if isinstance(obj.get("key"), str) else None)

    def submit_batch(self, batch: Batch, jobs: Sequence[Job]) -> Awaitable[Batch | str | None]:
        """POST /batches (SPEC 10.3): the batch and its jobs claimed as single submissions are, then the quotas (a
        batch of n takes n from `rate`, and its n jobs count against `max_pending`)."""
        if self.tenant:
            self._claim_batch(batch, jobs)
        if self.quotas:
            return self._batch_within_quotas(batch, jobs)
        submitted: Awaitable[Batch | str | None] = self._manager.submit_batch(batch, jobs)
        return submitted

    async def _batch_within_quotas(self, batch: Batch, jobs: Sequence[Job]) -> Batch | str | None:
        await self._within_quotas(len(jobs))
        known: Batch | str | None = await self._manager.submit_batch(batch, jobs)
        return known

    def _claim_batch(self, batch: Batch, jobs: Sequence[Job]) -> None:
        batch.id = self.own(batch.id)
        if len(batch.id) > _BATCH_MAX:
            raise BadRequest(
                f"id must be at most {_BATCH_MAX - len(self.prefix)} characters for tenant {self.tenant}", "id"
            )
        for i, job in enumerate(jobs):
            try:
                self._claim(job)
            except BadRequest as exc:
                raise BadRequest(exc.message, f"jobs[{i}].{exc.field}") from None
            job.batch = batch.id
        batch.key = self.home  # the callback's job; on_complete's key is its own, in the tenant's space
        if batch.on_complete is not None:
            for obj in descendants([batch.on_complete]):
                self._claim_object(obj)
            if len(batch.on_complete.get("id") or "") > _MAX:
                raise BadRequest(
                    f"id must be at most {_MAX - len(self.prefix)} characters for tenant {self.tenant}",
                    "on_complete.id",
                )

    async def _within_quotas(self, n: int) -> None:
        principal = self.principal
        if principal.max_pending is not None:
            pending = sum((await self._manager.prefix_counts(self.prefix, UNFINISHED)).values())
            if pending + n > principal.max_pending:
                raise TooMany(
                    f"tenant {self.tenant} has {pending} unfinished jobs; token {principal.name} may have "
                    f"{principal.max_pending}",
                    1.0,
                )
        if principal.rate is not None:
            wait = await self.buckets.take(principal.name, principal.rate, n)
            if wait is not None:
                raise TooMany(f"token {principal.name} may submit {principal.rate:g} jobs a second", wait)

    # --- one job, by id --------------------------------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        job: Job | None = await self._manager.get(self.own(job_id))
        return job

    async def wait(self, job_id: str, timeout: float) -> Job | None:  # noqa: ASYNC109 (a long-poll's own limit)
        job: Job | None = await self._manager.wait(self.own(job_id), timeout)
        return job

    async def cancel(self, job_id: str) -> Job:
        job: Job = await self._manager.cancel(self.own(job_id))
        return job

    async def run_now(self, job_id: str) -> Job:
        job: Job = await self._manager.run_now(self.own(job_id))
        return job

    async def get_batch(self, batch_id: str) -> Batch | None:
        batch: Batch | None = await self._manager.get_batch(self.own(batch_id))
        return batch

    async def retry_dead(self, job_id: str) -> Job:
        job: Job = await self._manager.retry_dead(self.own(job_id))
        return job

    async def dead_job(self, job_id: str) -> Job | None:
        job: Job | None = await self._manager.dead_job(self.own(job_id))
        return job

    async def delete_dead(self, job_id: str) -> bool:
        return bool(await self._manager.delete_dead(self.own(job_id)))

    # --- listings and counts ---------------------------------------------------------------------------------
    async def list_jobs(self, **query: Any) -> Page:
        page: Page = await self._manager.list_jobs(**query, id_prefix=self.prefix or None)
        return page

    async def dead_page(self, *, page: int, size: int) -> tuple[list[dict[str, Any]], int]:
        if not self.tenant:
            found: tuple[list[dict[str, Any]], int] = await self._manager.dead_page(page=page, size=size)
            return found
        every, _ = await self._manager.dead_page(page=1, size=1 << 40)
        mine = [item for item in every if str(item["id"]).startswith(self.prefix)]
        return mine[(page - 1) * size : page * size], len(mine)

    async def dead_matching(self, narrow: Any, *, page: int, size: int) -> tuple[list[dict[str, Any]], int]:
        """GET /dead with filters (SPEC 10.4): a tenant's own dead jobs only."""
        found: tuple[list[dict[str, Any]], int] = await self._manager.dead_matching(
            narrow, page=page, size=size, id_prefix=self.prefix or None
        )
        return found

    async def counts(self) -> dict[str, int]:
        if not self.tenant:
            counts: dict[str, int] = await self._manager.counts()
            return counts
        found: dict[str, int] = await self._manager.prefix_counts(self.prefix, list(Status))
        return found

    async def sys_info(self, cap: int = 1000) -> dict[str, Any]:
        info: dict[str, Any] = await self._manager.sys_info(cap)
        if not self.tenant:
            return info
        mine = self.prefix
        for worker in info["workers"]:
            if worker["running"] is not None and not worker["running"].startswith(mine):
                worker["running"] = None
            worker["queue"] = 0  # jobs of every tenant: not this one's to count
        for name in ("running", "delayed", "failed"):
            info[name] = [i for i in info[name] if i.startswith(mine)]
        info["counts"] = await self.counts()
        info["today"] = await self._today()
        return info

    async def metrics_text(self) -> str:
        """GET /metrics for a tenant's token: its jobs by status and its keys' waiting and running jobs, in
        Prometheus text format. The process's counters and histograms sum every tenant's jobs: not shown."""
        lines = [
            "# HELP poulpe_tenant_jobs This tenant's jobs in the store, by status",
            "# TYPE poulpe_tenant_jobs gauge",
            *(f'poulpe_tenant_jobs{{status="{status}"}} {n}' for status, n in (await self.counts()).items()),
            "# HELP poulpe_tenant_key_jobs This tenant's keys: due jobs waiting and attempts running",
            "# TYPE poulpe_tenant_key_jobs gauge",
        ]
        for key in (await self.controls.listing(1, 100))["keys"]:
            for what in ("waiting", "running"):
                lines.append(f'poulpe_tenant_key_jobs{{key="{key["key"]}",what="{what}"}} {key[what]}')
        return "\n".join(lines) + "\n"

    async def _today(self) -> dict[str, int]:
        """The tenant's jobs that ended since UTC midnight: the store keeps day counts for the whole deployment
        only, so they are counted from the tenant's newest final jobs (at most TODAY_SCAN of each status)."""
        midnight = time.time() // 86400 * 86400
        today = {}
        for status, word in ((Status.SUCCEEDED, "succeeded"), (Status.DEAD, "failed")):
            found, page = 0, 1
            while page * 500 <= TODAY_SCAN:
                listed: Page = await self.list_jobs(status=status, page=page, size=500)
                found += sum(1 for job in listed.jobs if (job.finished_at or 0.0) >= midnight)
                if len(listed.jobs) < 500:
                    break
                page += 1
            today[word] = found
        return today


def own_key(tenant: str, key: str | None) -> str:
    """A key in the tenant's space: `tenant:<name>` itself (its jobs' default), or under `tenant:<name>/`."""
    home = f"tenant:{tenant}"
    if key is None or key == home or key.startswith(home + "/"):
        return key or home
    return f"{home}/{key}"


class TenantKeys:
    """The keys' controls as a tenant's token sees them: its own keys only; any other key is read as one of its
    own (`shop` as `tenant:pay/shop`), so another tenant's key answers as a key with no jobs and no limits."""

    def __init__(self, controls: Any, tenant: str) -> None:
        self._controls = controls
        self.tenant = tenant

    def _own(self, key: str) -> str:
        return own_key(self.tenant, key)

    def _mine(self, key: str) -> bool:
        return self._own(key) == key

    async def state(self, key: str) -> dict[str, Any]:
        state: dict[str, Any] = await self._controls.state(self._own(key))
        return state

    async def put(self, key: str, body: bytes) -> dict[str, Any]:
        state: dict[str, Any] = await self._controls.put(self._own(key), body)
        return state

    async def delete(self, key: str) -> dict[str, Any]:
        state: dict[str, Any] = await self._controls.delete(self._own(key))
        return state

    async def listing(self, page: int, size: int) -> dict[str, Any]:
        listed: dict[str, Any] = await self._controls.listing(page, size, within=self._mine)
        return listed
