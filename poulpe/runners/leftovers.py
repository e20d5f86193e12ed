"""No process outlives its EXEC job (SPEC 4): a job's processes are found, even outside its group, and ended.

poulpe makes itself a child subreaper (Linux `prctl`), so a descendant whose parent exits re-parents to poulpe
instead of init and stays in poulpe's process tree, where /proc shows it. A job's processes are the ones in that
tree that are in the program's process group or session, or carry the attempt's `POULPE_JOB_ID` and
`POULPE_ATTEMPT` in their environment (a daemon that called `setsid` keeps it), and everything below them. Nothing
outside poulpe's own tree is ever signalled. poulpe reaps what it ends, by pid only: the program itself belongs to
asyncio's child watcher, and `waitpid(-1)` would steal its exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

log = logging.getLogger(__name__)
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphaned descendants re-parent to this process from now on; False where the system has no such thing."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        ok = False
    if not ok:
        log.warning("cannot become a child subreaper: a program's daemons that leave its session may outlive it")
    return ok


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    zombie: bool


def scan() -> dict[int, Proc]:
    """Every process /proc shows now."""
    procs: dict[int, Proc] = {}
    try:
        names = os.listdir("/proc")
    except OSError:  # no /proc here: nothing can be found, the process group is all poulpe ends
        return procs
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as file:
                stat = file.read()
        except OSError:  # gone meanwhile
            continue
        fields = stat.rpartition(b")")[2].split()  # the command name may hold spaces and parentheses
        pid = int(name)
        procs[pid] = Proc(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0] in (b"Z", b"X"))
    return procs


def _below(procs: dict[int, Proc], roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for proc in procs.values():
        children[proc.ppid].append(proc.pid)
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children[pid])
    return found


def _children_of_me() -> set[int] | None:
    """poulpe's direct children (each thread lists its own), or None where /proc cannot tell."""
    children: set[int] = set()
    try:
        for task in os.listdir("/proc/self/task"):
            # a thread that ended meanwhile has no file any more
            with contextlib.suppress(FileNotFoundError), open(f"/proc/self/task/{task}/children") as file:
                children.update(map(int, file.read().split()))
    except OSError:
        return None
    return children


def _marked(pid: int, marks: tuple[bytes, ...]) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            environ = b"\0" + file.read()
    except OSError:
        return False
    return all(mark in environ for mark in marks)


class JobProcesses:
    """The processes of one attempt: its program's group and session, its descendants and its marked environment."""

    def __init__(self, leader: int, job_id: str, attempt: int) -> None:
        self.leader = leader
        self.marks = (f"\0POULPE_JOB_ID={job_id}\0".encode(), f"\0POULPE_ATTEMPT={attempt}\0".encode())
        self.seen: set[int] = set()  # every pid found so far, to be reaped at the end (a zombie's environ is empty)

    def alive(self) -> set[int]:
        """The job's processes that still run (zombies are found and remembered, not returned)."""
        procs = scan()
        me = os.getpid()
        ours = _below(procs, {me}) - {me}
        roots = {
            pid
            for pid in ours
            if pid == self.leader
            or pid in self.seen
            or self.leader in (procs[pid].pgid, procs[pid].sid)
            or (not procs[pid].zombie and _marked(pid, self.marks))
        }
        members = _below(procs, roots) & ours
        self.seen |= members
        return {pid for pid in members if not procs[pid].zombie}

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to every process of the job, the program's group first."""
        pids = self.alive()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.leader, sig)  # the group id is the leader's pid: not reused while a member lives
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def nothing_left(self, leaders: set[int]) -> bool:
        """Cheap check, once the program has been reaped: its group is empty and poulpe has no child but the programs
        still running (`leaders`). Then nothing of the job is left: whatever outlived the program either stayed in its
        group or, with poulpe a subreaper, hangs below an orphan re-parented to poulpe. Saves scanning /proc."""
        try:
            os.killpg(self.leader, 0)
        except ProcessLookupError:
            pass
        except PermissionError:
            return False
        else:
            return False
        children = _children_of_me()
        return children is not None and children <= leaders

    async def end(self, grace: float) -> None:
        """SIGTERM everything, SIGKILL what is left after `grace` s; returns once all are gone and reaped (bounded)."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.alive():
            if time.monotonic() > deadline:
                self.signal(signal.SIGKILL)
                break
            await asyncio.sleep(0.02)
        await self.reap()

    async def reap(self) -> None:
        """Wait (bounded) for every process seen to end, reaping those that re-parented to poulpe."""
        self.alive()
        await reap(self.seen - {self.leader}, within=1.0)


async def reap(pids: set[int], within: float) -> None:
    """Wait for `pids` to end, reaping those that re-parented to poulpe, so that no zombie stays behind."""
    pending = set(pids)
    deadline = time.monotonic() + within
    while pending:
        pending -= _reaped(pending)
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    if pending:
        log.warning("processes of an EXEC job still around after being killed: %s", sorted(pending))


def _reaped(pids: set[int]) -> set[int]:
    """Those of `pids` that are gone now (WNOHANG: never blocks)."""
    gone = set()
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not (or no longer) our child: gone, or its own parent reaps it
            done = 0 if os.path.exists(f"/proc/{pid}") else pid
        if done:
            gone.add(pid)
    return gone
