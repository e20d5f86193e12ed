"""A job's path from `POST /task_in_queue` to its result, traced as it runs (docs/design.md, "Measures of the
structure"): which modules hand the job to which, in order, and which only read it on the side.

What is traced (`sys.setprofile`, the event loop's thread only): every call from one poulpe module to another that
carries the job (the `Job`, its id, or a list, event or submission holding it), and every return from one poulpe
module to another that gives back the job, its attempt's `Outcome`, or a future that later resolves to the job (a
coroutine's pause while it waits is not a return).

The rule, computed from those two lists alone:
- a **side reader** is a module the job is handed to that hands nothing of it on: it calls no other poulpe module
  with the job (`job.py`, the record's own methods, and other side readers aside) and gives back neither the job,
  nor its outcome, nor a future of it. It reads the job to answer a value the path does not carry on (a sort key, a
  trace header, an encoded row or body) or to observe it (a counter, an alert, a subscriber of the bus);
- the **path** is every other module the job reached; `job.py` is the job itself, not a step;
- the path **returns into a module it left** when a call carries the job into a path module that had already
  called another path module with it. A function's return to its caller is the call ending, not a return.
The side readers are printed and pinned: the set may only shrink, so nothing is hidden in it.
"""

from __future__ import annotations

import asyncio
import dis
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from poulpe.job import Job
from poulpe.runners import Outcome
from poulpe.settings import Settings
from tests.serving import serving
from tests.target import Target

JOB_ID = "path-of-one-job"
RECORD = "poulpe.job"
YIELD = dis.opmap["YIELD_VALUE"]
# Measured (docs/design.md): intake/http, validate, manager, store/sqlite, dispatch/ready, outcome (the attempt and
# the finish step), runners/http, dispatch/events. The store times its own operations (store/timing.py is told an
# operation's name and duration, never the job), so no timing wrapper stands between the manager and the store.
PATH_MODULES = 8
RETURNS_LEFT: set[tuple[str, str]] = set()  # none left: keep it so
# Modules that read the job on the side (the module docstring's rule); the set only shrinks.
SIDE_READERS = {
    "poulpe.store.sqlite_writer",  # encodes the job into its row (the writer thread, which commits, is not traced)
    "poulpe.dispatch.order",  # the sort key
    "poulpe.dispatch.controls",  # whether the job's key is paused or at its limits
    "poulpe.alerts",  # `late` and `slow` at the attempt's start, `dead` from the bus
    "poulpe.tracing",  # the outgoing `traceparent` header
    "poulpe.callbacks",  # a subscriber of the bus: the callback is sent on the side
    "poulpe.responses",  # the answer's body, encoded from the finished job
}


def _holds_job(value: Any, depth: int = 0, *, by_id: bool = True) -> bool:
    if isinstance(value, Job):
        return value.id == JOB_ID
    if isinstance(value, str):
        return by_id and value == JOB_ID
    if depth > 1:
        return False
    if isinstance(value, list | tuple | set | frozenset):
        return any(_holds_job(v, depth + 1, by_id=by_id) for v in list(value)[:50])
    if isinstance(value, dict):
        return any(_holds_job(v, depth + 1, by_id=by_id) for v in list(value.values())[:50])
    return any(_holds_job(getattr(value, name, None), depth + 1, by_id=by_id) for name in ("job", "jobs"))


def _gives_result(value: Any) -> bool:
    """The job itself (an id given back, as in a sort key, is not the job), or its attempt's outcome: only the
    traced job runs while the trace is on."""
    return isinstance(value, Outcome) or _holds_job(value, by_id=False)


def _module(frame: FrameType | None) -> str | None:
    name = frame.f_globals.get("__name__", "") if frame is not None else ""
    return name if name.startswith("poulpe") else None


class HandOffs:
    """Calls carrying the job, (caller, callee), and returns giving it back, (callee, caller), between modules."""

    def __init__(self) -> None:
        self.edges: list[tuple[str, str]] = []
        self.gives: list[tuple[str, str]] = []
        self.when: dict[tuple[str, str, str], int] = {}  # ("call" | "give", from, to): when first seen
        self._futures: dict[tuple[str, str, int], asyncio.Future[Any]] = {}

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event not in ("call", "return"):
            return
        callee, caller = _module(frame), _module(frame.f_back)
        if callee is None or caller is None or callee == caller:
            return
        if event == "call":
            code = frame.f_code
            count = code.co_argcount + code.co_kwonlyargcount
            names = code.co_varnames[: count + bool(code.co_flags & 4) + bool(code.co_flags & 8)]
            carries = any(_holds_job(frame.f_locals.get(name)) for name in names)
            if carries and (caller, callee) not in self.edges:  # the same two modules again: one hand-off
                self.edges.append((caller, callee))
                self.when[("call", caller, callee)] = len(self.when)
        elif frame.f_code.co_code[frame.f_lasti] == YIELD:  # a coroutine waiting, not returning
            return
        elif isinstance(arg, asyncio.Future):  # a future returned, for the caller to wait on
            if (callee, caller, id(arg)) not in self._futures:
                self._futures[(callee, caller, id(arg))] = arg
                self.when.setdefault(("future", callee, caller), len(self.when))
        elif _gives_result(arg) and (callee, caller) not in self.gives:
            self.gives.append((callee, caller))
            self.when[("give", callee, caller)] = len(self.when)

    def settle(self) -> None:
        """Futures that resolved to the job or its outcome once the job was done count as giving it back."""
        for (callee, caller, _), fut in self._futures.items():
            done = fut.done() and not fut.cancelled() and fut.exception() is None
            if done and _gives_result(fut.result()) and (callee, caller) not in self.gives:
                self.gives.append((callee, caller))
                self.when[("give", callee, caller)] = self.when[("future", callee, caller)]

    def reached(self) -> list[str]:
        """Every module the job reached by a call, then those that gave it to one of these (`validate`, which
        makes it); the record's own methods are the job itself."""
        seen: list[str] = []
        for caller, callee in self.edges:
            for module in (caller, callee):
                if module not in seen and module != RECORD:
                    seen.append(module)
        grown = True
        while grown:
            grown = False
            for giver, taker in self.gives:
                if taker in seen and giver not in seen and giver != RECORD:
                    seen.append(giver)
                    grown = True
        return seen

    def side_readers(self) -> list[str]:
        """Modules that take the job and hand nothing of it on (the module docstring's rule), to a fixed point."""
        giving = {callee for callee, _ in self.gives}
        side: list[str] = []
        changed = True
        while changed:
            changed = False
            for module in self.reached():
                onward = {b for a, b in self.edges if a == module and b != RECORD}
                if module not in side and module not in giving and all(b in side for b in onward):
                    side.append(module)
                    changed = True
        return [module for module in self.reached() if module in side]

    def path(self) -> list[str]:
        side = self.side_readers()
        return [module for module in self.reached() if module not in side]

    def returns(self) -> list[tuple[str, str]]:
        """Calls carrying the job into a path module the job had left, in the order they happened. The job leaves a
        module when that module calls another path module with it which does not give it back (a call the job
        comes back from is a round trip), or gives it to a module that had not called it with the job (a worker
        pulling its next job from the ready structure)."""
        path = set(self.path())
        left: set[str] = set()
        back = []
        for kind, a, b in sorted((k for k in self.when if k[0] != "future"), key=self.when.__getitem__):
            if a not in path or b not in path:
                continue
            if kind == "call":
                if b in left:
                    back.append((a, b))
                if (b, a) not in self.gives:
                    left.add(a)
            elif self.when.get(("call", b, a), len(self.when)) > self.when[(kind, a, b)]:
                left.add(a)
        return back


async def test_a_job_goes_from_post_to_its_result_through_few_modules(tmp_path: Path, target: Target) -> None:
    settings = Settings(data=tmp_path / "p.db", dead=tmp_path / "dead", workers=2)
    async with serving(settings) as client:
        warm = await client.post("/task_in_queue", json={"method": "GET", "name": target.url(), "wait": 10})
        assert warm.status_code == 200  # the first job pays for imports and connections; the traced one does not
        trace = HandOffs()
        sys.setprofile(trace)
        try:
            answer = await client.post(
                "/task_in_queue", json={"id": JOB_ID, "method": "GET", "name": target.url(), "wait": 10}
            )
        finally:
            sys.setprofile(None)
        assert answer.status_code == 200 and answer.json()["status"] == "succeeded", answer.text
    trace.settle()
    calls = "\n".join(f"{a} -> {b}" for a, b in trace.edges)
    gives = "\n".join(f"{a} gives back to {b}" for a, b in trace.gives)
    report = f"path: {trace.path()}\nside readers: {trace.side_readers()}\nreturns: {trace.returns()}\n{calls}\n{gives}"
    print(report)
    assert len(trace.path()) <= PATH_MODULES, report
    assert set(trace.returns()) <= RETURNS_LEFT, report
    assert set(trace.side_readers()) <= SIDE_READERS, f"a new side reader: name it here and in docs/design.md\n{report}"
