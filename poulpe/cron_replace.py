"""`overlap=replace`: a line's new fire ends the earlier ones still running or waiting (SPEC 10.5, docs/cron.md).

Kept apart from the cron timer (crontab.py) because it is the one place cron acts on jobs already handed over:
a waiting fire is cancelled, a running one is stopped by this process if it runs it here.
"""

from __future__ import annotations

import logging
import math
from collections import Counter

from poulpe.aborts import Aborts
from poulpe.errors import Conflict, NotFound
from poulpe.job import Job
from poulpe.manager import JobManager

log = logging.getLogger(__name__)


class Replacer:
    """Ends a line's earlier fires for its new one; counts each end as `replaced` in the cron's fire counts."""

    def __init__(self, manager: JobManager, aborts: Aborts | None, counts: Counter[str]) -> None:
        self.manager = manager
        self.aborts = aborts
        self.counts = counts

    async def held_before(self, fingerprint: str, fire: float, done: str | None) -> None:
        """Every fire of the line from before this one that this process holds (running, or waiting for a worker)
        ends here, whatever the stored latest fire says. On Redis the latest fire read may already be this very
        fire (another process made it first) or the process that made it may not hold the running one: each
        process ends what it holds, at each fire."""
        prefix = f"cron:{fingerprint}:"
        for job_id in [i for i in self.manager.held_ids() if i.startswith(prefix) and i != done]:
            if fired_at(job_id, prefix) >= fire:
                continue  # a later fire (this process is late): not this fire's to end
            job = await self.manager.get(job_id)
            if job is not None and not job.final:
                await self.replace(job)

    async def replace(self, before: Job) -> None:
        try:
            await self.manager.cancel(before.id)
            log.info("cron: %s cancelled, the line's next fire replaces it", before.id)
            self.counts["replaced"] += 1
        except Conflict:  # running: stop its attempt (here), or it ends cancelled after its attempt (elsewhere)
            if self.aborts is not None and self.aborts.abort(before.id):
                log.info("cron: %s stopped, the line's next fire replaces it", before.id)
                self.counts["replaced"] += 1
        except NotFound:
            pass


def fired_at(job_id: str, prefix: str) -> float:
    """A fire's time from its id: `<prefix><fire time>`, or `<prefix>run:<unix ms>` for a run now."""
    rest = job_id.removeprefix(prefix)
    try:
        return int(rest.removeprefix("run:")) / 1000 if rest.startswith("run:") else float(rest)
    except ValueError:
        return math.inf  # not a fire of this line's making: never ended by it
