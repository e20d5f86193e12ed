"""The cron file at run time: one timer for the next fire, reloads on SIGHUP and on file change, and each line's
options (SPEC 10.5): its zone, overlap, catch-up, jitter, key, priority and pause. Fires are submitted LEAD_S ahead,
as jobs scheduled for their time, so that storing them is not on the way to their start.

Each fire becomes an ordinary job (id `cron:<fingerprint>:<fire time>`) submitted through JobManager, so retries,
results and dead letters work as for any job, and processes sharing a store fire each time once (the second
submit of an id is a duplicate). What each line last did is stored (store/cron_state.py): catch-up at start
replays only the fires after it, and every process sees the same pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec

from poulpe.aborts import Aborts
from poulpe.cron import CronError, CronLine, fire_times, load_cron, next_fire
from poulpe.cron_options import Overlap
from poulpe.cron_replace import Replacer
from poulpe.errors import Conflict, NotFound, PoulpeError
from poulpe.hangup import off_hangup, on_hangup
from poulpe.job import Job, Status
from poulpe.manager import JobManager
from poulpe.store.cron_state import CronStates, LineState, Mark
from poulpe.validate import Limits, job_from_object

log = logging.getLogger(__name__)
MAX_REPLAYED = 1000  # catch-up replays at most this many fires of a line, the most recent ones
FIRE_OUTCOMES = ("fired", "skipped", "replaced", "paused", "caught_up", "run_now", "backfilled")
LEAD_S = 0.5  # fires of `overlap=allow` lines are submitted this long ahead (scheduled for their time)
REFRESH_S = 0.5  # how often the stored pauses are read again: a pause made on another process holds within 1 s


def read_checked(path: Path, limits: Limits) -> list[CronLine]:
    """The file's lines, each also passed through the job validator (a MAIL_TO line without --smtp_server, an
    EXEC line naming a program that is not in --exec_dir): a bad line is refused at start, not at its first fire."""
    lines = load_cron(path)
    for line in lines:
        try:
            job_from_object(line.job_fields(time.time() + 86400), limits)
        except PoulpeError as exc:
            raise CronError(f"{path} line {line.line_no}: {exc.message}") from None
    return lines


class Crontab:
    def __init__(
        self,
        path: Path,
        manager: JobManager,
        limits: Limits,
        *,
        tz: ZoneInfo,
        states: CronStates | None = None,
        aborts: Aborts | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.manager = manager
        self.limits = limits
        self.tz = tz
        self.states = states
        self.aborts = aborts
        self.clock = clock
        self.lines: list[CronLine] = []
        self.next: dict[CronLine, float] = {}
        self.stored: dict[str, LineState] = {}  # by fingerprint, read every REFRESH_S
        self.loaded_at = 0.0
        self._begun: set[str] = set()  # fingerprints whose stored state exists
        self.counts: Counter[str] = Counter()  # fires by outcome (cron_metrics.py)
        self.replacer = Replacer(manager, aborts, self.counts)
        self._templates: dict[CronLine, Job] = {}
        self._ahead: dict[str, str] = {}  # each line's latest fire submitted here (maybe ahead of its time)
        self._reload = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def zone(self, line: CronLine) -> ZoneInfo:
        return line.options.zone(self.tz)

    def line(self, fingerprint: str) -> CronLine:
        for line in self.lines:
            if line.fingerprint == fingerprint:
                return line
        raise NotFound(f"no cron line with id {fingerprint}")

    def paused(self, line: CronLine) -> bool:
        """An operator's pause or resume (stored) wins over the file's `paused=`."""
        stored = self.stored.get(line.fingerprint)
        return line.options.paused if stored is None or stored.paused is None else stored.paused

    def load(self) -> None:
        """Read the file; raises CronError (with the line number) and keeps the old schedule when it is bad."""
        lines = read_checked(self.path, self.limits)
        now = self.clock()
        self.lines = lines
        self.loaded_at = now
        self.next = {}
        following = _Following(self)
        for line in lines:
            fire = following(line, now)
            if fire is not None:
                self.next[line] = fire
        # each line's job, validated once: a fire is a copy with its own id and times (validation is off its path)
        self._templates = {line: job_from_object(line.job_fields(now), self.limits, now=now).job for line in lines}
        log.info("cron: %d lines from %s", len(lines), self.path)

    def start(self) -> None:
        on_hangup(self._reload.set)  # SIGHUP (shared with the tokens file: poulpe/hangup.py)
        self._tasks = [
            asyncio.create_task(self._fire_forever(), name="poulpe-cron"),
            asyncio.create_task(self._watch_file(), name="poulpe-cron-watch"),
        ]
        if self.states is not None:
            self._tasks.append(asyncio.create_task(self._refresh_forever(), name="poulpe-cron-state"))

    async def stop(self) -> None:
        off_hangup(self._reload.set)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _fire_forever(self) -> None:
        await self._catch_up()
        while True:
            if self._reload.is_set():
                self._reload.clear()
                try:
                    self.load()
                except CronError as exc:
                    log.error("cron: new file refused, the old schedule stays: %s", exc)
                await self._begin()
            wait = min((fire - _lead(line) for line, fire in self.next.items()), default=None)
            timeout = None if wait is None else max(0.0, wait - self.clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._reload.wait()
                continue
            now = self.clock()
            due = [(line, fire) for line, fire in self.next.items() if fire - _lead(line) <= now]
            following = _Following(self)
            for line, fire in due:
                upcoming = following(line, max(fire, now))
                if upcoming is None:
                    del self.next[line]
                else:
                    self.next[line] = upcoming
            try:
                await self._fire(due)
            except PoulpeError as exc:  # the store is away: these fires are lost (catch-up may replay them)
                log.error("cron: %d fires not made: %s", len(due), exc.message)

    async def _fire(self, due: list[tuple[CronLine, float]]) -> None:
        """Submit the due fires of running lines; skip those of paused lines and, with `overlap=skip`, of lines
        whose previous fire is not final; cancel that fire first with `overlap=replace`. Then store what each line
        did (a skipped fire is handled too: it is never run later)."""
        marks, jobs = [], []
        before: Job | None = None
        previous = await self._previous([line for line, _ in due if line.options.overlap is not Overlap.ALLOW])
        for line, fire in due:
            job_id: str | None = line.job_id(fire)
            if self.paused(line):
                job_id = None
                self.counts["paused"] += 1
            elif (before := previous.get(line.fingerprint)) is not None and not before.final and before.id != job_id:
                if line.options.overlap is Overlap.SKIP:
                    log.info("cron line %d: fire %s skipped, %s is %s", line.line_no, job_id, before.id, before.status)
                    job_id = None
                    self.counts["skipped"] += 1
                else:
                    await self.replacer.replace(before)
            if job_id is not None and line.options.overlap is Overlap.REPLACE:
                await self.replacer.held_before(line.fingerprint, fire, before.id if before is not None else None)
            if job_id is not None:
                jobs.append(self.fire_job(line, fire))
                self.counts["fired"] += 1
                self._ahead[line.fingerprint] = job_id
            marks.append(Mark(line.fingerprint, fire, job_id))
        await self._submit([job for job in jobs if job is not None])
        await self._handled(marks)

    async def _previous(self, lines: list[CronLine]) -> dict[str, Job]:
        """The latest fire of each of these lines, read from the store (another process may have made it)."""
        if not lines or self.states is None:
            return {}
        stored = await self.states.read([line.fingerprint for line in lines])
        found = {}
        for fp, state in stored.items():
            if state.last_id is not None and (job := await self.manager.get(state.last_id)) is not None:
                found[fp] = job
        return found

    def fire_job(self, line: CronLine, fire: float) -> Job | None:
        """The job of a scheduled fire: what `job_from_object(line.job_fields(fire))` gives, from the line's job
        validated at load (some 50 µs less a fire: a thousand lines firing together are submitted in milliseconds)."""
        template = self._templates.get(line)
        if template is None:
            return self._job(line, line.job_fields(fire))
        job_id, now = line.job_id(fire), self.clock()
        run_at = max(now, fire + line.jitter(job_id))
        status = Status.QUEUED if run_at <= now else Status.SCHEDULED
        return msgspec.structs.replace(template, id=job_id, created_at=now, run_at=run_at, status=status, history=[])

    def _job(self, line: CronLine, fields: dict[str, object]) -> Job | None:
        try:
            return job_from_object(fields, self.limits, now=self.clock()).job
        except PoulpeError as exc:
            log.error("cron line %d (%s): %s", line.line_no, line.name, exc.message)
            return None

    async def _submit(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        if not jobs or not self.manager.accepting:
            return []
        try:
            stored = await self.manager.submit(jobs)
        except PoulpeError as exc:
            log.error("cron: fire not stored: %s", exc.message)
            return []
        for job, duplicate in stored:
            log.debug("cron fire %s%s", job.id, " (already fired elsewhere)" if duplicate else "")
        return stored

    async def _handled(self, marks: list[Mark]) -> None:
        if self.states is None or not marks:
            return
        try:
            await self.states.handled(marks)
        except PoulpeError as exc:  # the next tick writes a later time; catch-up may replay one fire (same id)
            log.warning("cron: fire times not stored: %s", exc.message)

    async def _begin(self) -> None:
        """Lines seen for the first time get a stored state from now: catch-up starts there."""
        new = [line.fingerprint for line in self.lines if line.fingerprint not in self._begun]
        if self.states is None or not new:
            return
        try:
            await self.states.begin(new, self.loaded_at)
            self._begun.update(new)
        except PoulpeError as exc:
            log.warning("cron: line states not stored: %s", exc.message)

    async def _catch_up(self) -> None:
        """At start: each `catchup=S` line's fires missed while no poulpe ran (after its stored last fire, within
        S seconds), each once, oldest first, without jitter; then every line gets a stored state. The fires that came
        due while this process was still starting (after the file was read, before this runs) count as missed too:
        the line's next fire is the first one after them, so a slow start leaves no gap."""
        if self.states is None:
            return
        try:
            self.stored = await self.states.read([line.fingerprint for line in self.lines])
        except PoulpeError as exc:
            log.warning("cron: no catch-up, the store does not answer: %s", exc.message)
            return
        self._begun.update(self.stored)
        end = max(self.loaded_at, self.clock())
        following = _Following(self)
        marks, jobs = [], []
        for line in self.lines:
            seen = self.stored.get(line.fingerprint, LineState()).seen
            if not line.options.catchup or seen is None or self.paused(line):
                continue
            start = max(seen, math.ceil(self.loaded_at - line.options.catchup) - 1)  # S seconds ago included
            missed, cut = last_fires(line, start, end, self.zone(line), MAX_REPLAYED)
            upcoming = self.next.get(line)
            if upcoming is not None and upcoming <= end:  # replayed here: the timer goes on from the one after
                if (after := following(line, end)) is None:
                    del self.next[line]
                else:
                    self.next[line] = after
            if cut:
                log.warning("cron line %d: more missed fires than %d, only the last ones replayed", line.line_no, cut)
            for fire in missed:
                jobs.append(self._job(line, line.job_fields(fire, jitter=False)))
                marks.append(Mark(line.fingerprint, fire, line.job_id(fire)))
            if missed:
                log.info("cron line %d: catching up %d missed fires", line.line_no, len(missed))
                self.counts["caught_up"] += len(missed)
        await self._submit(sorted((job for job in jobs if job is not None), key=lambda job: job.run_at))
        await self._handled(marks)
        await self._begin()

    # --- what operators ask (cron_api.py) ---------------------------------------------------------------------
    async def run_now(self, line: CronLine) -> Job:
        """Fire the line now (id `cron:<fp>:run:<unix ms>`), paused or not; it becomes the line's latest fire."""
        now = self.clock()
        job_id = line.run_id(now)
        job = job_from_object(line.job_fields(now, job_id=job_id, jitter=False), self.limits, now=now).job
        stored, _ = (await self.manager.submit([job]))[0]
        if self.states is not None:
            await self.states.set_last(line.fingerprint, job_id)
            self.stored[line.fingerprint] = self.stored.get(line.fingerprint, LineState())._replace(last_id=job_id)
        log.info("cron line %d: run now as %s", line.line_no, job_id)
        self.counts["run_now"] += 1
        return stored

    async def set_paused(self, line: CronLine, paused: bool) -> None:
        if self.states is not None:
            await self.states.set_paused(line.fingerprint, paused)
        self.stored[line.fingerprint] = self.stored.get(line.fingerprint, LineState())._replace(paused=paused)
        log.info("cron line %d (%s) %s", line.line_no, line.fingerprint, "paused" if paused else "resumed")
        now = self.clock()
        upcoming = next_fire(line, now, self.zone(line))
        if not paused and upcoming is not None and upcoming - _lead(line) <= now:  # its turn to go ahead passed
            await self._submit([job for job in [self._job(line, line.job_fields(upcoming))] if job is not None])
        ahead = self._ahead.get(line.fingerprint)
        if paused and ahead is not None:  # a fire submitted ahead of its time does not run either
            with contextlib.suppress(Conflict, NotFound):
                job = await self.manager.get(ahead)
                if job is not None and job.run_at > self.clock():
                    await self.manager.cancel(ahead)

    async def backfill(self, line: CronLine, fires: Sequence[float]) -> int:
        """Submit these fire times of the line, due now, oldest first; how many were new (not made before)."""
        now = self.clock()
        jobs = [job_from_object(line.job_fields(f, jitter=False), self.limits, now=now).job for f in fires]
        stored = await self.manager.submit(jobs) if jobs else []
        created = sum(not duplicate for _, duplicate in stored)
        self.counts["backfilled"] += created
        return created

    async def _refresh_forever(self) -> None:
        assert self.states is not None
        while True:
            await asyncio.sleep(REFRESH_S)
            with contextlib.suppress(PoulpeError):
                self.stored = await self.states.read([line.fingerprint for line in self.lines])

    async def _watch_file(self) -> None:
        """Reload when the file changes on disk (editors often replace it: watch its directory)."""
        import watchfiles

        target = await asyncio.to_thread(self.path.resolve)
        async for changes in watchfiles.awatch(target.parent, debounce=200, recursive=False):
            if any(Path(changed).name == target.name for _, changed in changes):  # one folder, not recursive
                self._reload.set()


class _Following:
    """Next fire times, each computed once for lines that share a schedule and zone (a thousand `* * * * * * *`
    lines cost one croniter step, not a thousand)."""

    def __init__(self, crontab: Crontab) -> None:
        self.crontab = crontab
        self.known: dict[tuple[str, str, float], float | None] = {}

    def __call__(self, line: CronLine, after: float) -> float | None:
        zone = self.crontab.zone(line)
        key = (line.schedule, zone.key, after)
        if key not in self.known:
            self.known[key] = next_fire(line, after, zone)
        return self.known[key]


def _lead(line: CronLine) -> float:
    """How long before its time a fire is submitted: stored and in the timer before it is due, it starts on time
    (store and validation are off its path). A line with `overlap` other than allow decides at the fire's time."""
    return LEAD_S if line.options.overlap is Overlap.ALLOW else 0.0


def last_fires(line: CronLine, after: float, end: float, zone: ZoneInfo, cap: int) -> tuple[list[float], int]:
    """The line's fire times in (after, end], the last `cap` of them (and `cap` when some were cut, else 0),
    without walking every one of a long range: the start moves forward by halves until at most `cap` are left."""
    fires = list(itertools.islice(_upto(fire_times(line, after, zone), end), cap + 1))
    if len(fires) <= cap:
        return fires, 0
    low, high = after, end  # (low, end] holds more than `cap` fires, (high, end] at most `cap`
    while high - low > 1:
        middle = (low + high) / 2
        if len(list(itertools.islice(_upto(fire_times(line, middle, zone), end), cap + 1))) > cap:
            low = middle
        else:
            high = middle
    return list(_upto(fire_times(line, low, zone), end))[-cap:], cap


def _upto(fires: Iterable[float], end: float) -> Iterator[float]:
    return itertools.takewhile(lambda fire: fire <= end, fires)
