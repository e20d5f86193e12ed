"""ExecRunner with real programs (tests/programs, copied into a fresh --exec_dir for each test)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poulpe.job import Job, Method
from poulpe.runners import BODY_CAP, leftovers
from poulpe.runners.exec import SAFE_PATH, ExecRunner, resolve_program, split_args

PROGRAMS = Path(__file__).parent.parent / "programs"


@pytest.fixture
def exec_dir(tmp_path: Path) -> Path:
    shutil.copytree(PROGRAMS, tmp_path / "bin")
    return Path(os.path.realpath(tmp_path / "bin"))


@pytest.fixture
def runner(exec_dir: Path) -> ExecRunner:
    return ExecRunner(exec_dir=exec_dir, kill_after=0.5)


@pytest.fixture
def pidfile(tmp_path: Path) -> Iterator[Path]:
    """Where a program writes "<its pid> <its child's pid>"; whatever is still alive at the end is killed."""
    path = tmp_path / "pids"
    yield path
    if path.exists():
        for pid in map(int, path.read_text().split()):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def make_job(name: str, params: Any = None, job_id: str = "t1") -> Job:
    return Job(id=job_id, method=Method.EXEC, name=name, params=params)


def alive(pid: int) -> bool:
    """A zombie counts as gone: an orphan's reaper here may be slow or absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # reaped while we read
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


async def gone(*pids: int, within: float = 1.0) -> bool:
    """Whether all of `pids` end within a moment: a killed process closes its pipes a little before it is a zombie."""
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def pids_written(path: Path) -> bool:
    return path.exists() and len(path.read_text().split()) == 2


def canaries(directory: Path) -> list[Path]:
    return list(directory.glob("canary*"))


def pids(path: Path) -> tuple[int, int]:
    parent, child = map(int, path.read_text().split())
    return parent, child


# --- the happy path: kingtask's example ------------------------------------------------------------------------
@pytest.mark.parametrize("params", ["12 34", ["12", "34"]])
async def test_add_prints_the_sum(runner: ExecRunner, params: Any) -> None:
    outcome = await runner.run(make_job("add", params), 1, 10)
    assert outcome.ok, outcome.error
    assert outcome.result["stdout"] == "46"
    assert (outcome.result["exit_code"], outcome.result["stderr"]) == (0, "")
    assert outcome.result["elapsed_ms"] > 0


async def test_exit_code_and_first_stderr_line_make_the_error(runner: ExecRunner) -> None:
    outcome = await runner.run(make_job("add", "1"), 1, 10)
    assert (outcome.ok, outcome.final) == (False, False)
    assert outcome.error == "exit code 2: args count must be two"
    assert outcome.result["exit_code"] == 2


async def test_a_kingtask_job_that_writes_on_stderr_has_failed_even_with_exit_code_0(runner: ExecRunner) -> None:
    job = make_job("example", "12 x")  # kingtask's example.go: its error on stderr, exit code 0
    assert (await runner.run(job, 1, 10)).ok  # poulpe's own rule: the exit code
    job.fail_on_stderr = True  # kingtask's routes: stderr
    outcome = await runner.run(job, 1, 10)
    assert (outcome.ok, outcome.final, outcome.result["exit_code"]) == (False, False, 0)
    assert outcome.error == 'the program wrote on stderr: err:strconv.ParseInt: parsing "x": invalid syntax'
    ok = make_job("example", "12 45")
    ok.fail_on_stderr = True
    assert (await runner.run(ok, 1, 10)).result["stdout"] == "57"


async def test_death_by_signal_is_a_negative_exit_code(runner: ExecRunner) -> None:
    outcome = await runner.run(make_job("selfkill"), 1, 10)
    assert outcome.result["exit_code"] == -signal.SIGKILL
    assert outcome.error == "exit code -9 (SIGKILL): about to die"


# --- which programs may run ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", ".", "..", "../bin/add", "/bin/sh", "sub/add", "add\0", "./add"])
def test_names_that_are_not_plain_file_names(exec_dir: Path, name: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        resolve_program(exec_dir, name)


def test_refusals_inside_exec_dir(exec_dir: Path, tmp_path: Path) -> None:
    (exec_dir / "readme.txt").write_text("not a program")
    (exec_dir / "subdir").mkdir()
    (tmp_path / "outside").write_text("#!/bin/sh\necho escaped\n")
    (tmp_path / "outside").chmod(0o755)
    (exec_dir / "to_sh").symlink_to("/bin/sh")
    (exec_dir / "to_outside").symlink_to("../outside")
    (exec_dir / "dangling").symlink_to("nothing-here")
    cases = {
        "missing": "no program named 'missing'",
        "readme.txt": "is not executable",
        "subdir": "is not a regular file",
        "to_sh": "leads outside --exec_dir",
        "to_outside": "leads outside --exec_dir",
        "dangling": "no program named 'dangling'",
    }
    for name, message in cases.items():
        with pytest.raises(ValueError, match=message):
            resolve_program(exec_dir, name)


def test_symlinks_inside_and_leading_dashes_are_fine(exec_dir: Path) -> None:
    (exec_dir / "plus").symlink_to("add")
    shutil.copy(exec_dir / "add", exec_dir / "-dash")
    assert resolve_program(exec_dir, "plus") == exec_dir / "add"
    assert resolve_program(exec_dir, "-dash") == exec_dir / "-dash"


async def test_a_symlink_swapped_after_intake_is_refused_at_run_time(runner: ExecRunner, exec_dir: Path) -> None:
    (exec_dir / "job").symlink_to("add")
    resolve_program(exec_dir, "job")  # what intake checked
    (exec_dir / "job").unlink()
    (exec_dir / "job").symlink_to("/bin/echo")
    outcome = await runner.run(make_job("job", "hello"), 1, 10)
    assert (outcome.ok, outcome.final) == (False, True)
    assert outcome.error == "program 'job' leads outside --exec_dir"


async def test_a_file_the_kernel_cannot_run_fails_for_good(runner: ExecRunner, exec_dir: Path) -> None:
    (exec_dir / "noshebang").write_text("echo hi\n")
    (exec_dir / "noshebang").chmod(0o755)
    outcome = await runner.run(make_job("noshebang"), 1, 10)
    assert (outcome.ok, outcome.final) == (False, True)
    assert outcome.error == "program 'noshebang' could not start: Exec format error"


# --- arguments --------------------------------------------------------------------------------------------------
def test_split_args() -> None:
    assert split_args(None) == []
    assert split_args("a 'b c' \"d e\" f\\ g") == ["a", "b c", "d e", "f g"]
    assert split_args(["$HOME", "a b"]) == ["$HOME", "a b"]


@pytest.mark.parametrize("params", ["'unbalanced", {"a": 1}, ["a", 1], 42, "a\0b", ["a\0b"]])
def test_split_args_refusals_name_the_arguments(params: Any) -> None:
    with pytest.raises(ValueError, match="argument"):
        split_args(params)


async def test_shell_metacharacters_are_plain_arguments(runner: ExecRunner, exec_dir: Path) -> None:
    params = "'; touch canary1' '$(touch canary2)' '`touch canary3`' '| touch canary4' '&& touch canary5' > canary6"
    outcome = await runner.run(make_job("echoargs", params), 1, 10)
    assert outcome.ok
    assert outcome.result["stdout"].splitlines() == [
        "; touch canary1",
        "$(touch canary2)",
        "`touch canary3`",
        "| touch canary4",
        "&& touch canary5",
        ">",
        "canary6",
    ]
    assert canaries(exec_dir) == canaries(Path.cwd()) == []


# --- environment and output --------------------------------------------------------------------------------------
async def test_environment_is_minimal(runner: ExecRunner, exec_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POULPE_TOKEN", "secret-token")
    monkeypatch.setenv("HOME", "/root-of-poulpe")
    outcome = await runner.run(make_job("showenv", job_id="job-7"), 2, 10)
    lines = outcome.result["stdout"].splitlines()
    assert lines[0] == f"cwd={exec_dir}"
    env = dict(line.split("=", 1) for line in lines[1:])
    env.pop("PWD", None)  # the shell itself exports it
    assert env == {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "POULPE_JOB_ID": "job-7", "POULPE_ATTEMPT": "2"}
    assert "secret-token" not in outcome.result["stdout"]


async def test_output_beyond_64_kib_is_read_and_dropped(runner: ExecRunner) -> None:
    tracemalloc.start()
    try:
        outcome = await runner.run(make_job("flood"), 1, 60)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert outcome.ok, outcome.error
    assert outcome.result["stdout"] == "o" * BODY_CAP
    assert outcome.result["stderr"] == "e" * BODY_CAP
    assert peak < 4 * 1024 * 1024  # 40 MB went through, never held


# --- timeouts and process groups ---------------------------------------------------------------------------------
async def test_timeout_terminates_the_whole_group(runner: ExecRunner, pidfile: Path) -> None:
    started = time.monotonic()
    outcome = await runner.run(make_job("family", [str(pidfile)]), 1, 0.5)
    assert time.monotonic() - started < 1.5
    assert (outcome.ok, outcome.final, outcome.error) == (False, False, "timed out after 0.5s")
    assert outcome.result["exit_code"] == -signal.SIGTERM
    assert (outcome.result["stdout"], outcome.result["stderr"]) == ("started\n", "family is up\n")
    assert await gone(*pids(pidfile))


async def test_sigkill_after_kill_after_when_sigterm_is_ignored(runner: ExecRunner, pidfile: Path) -> None:
    started = time.monotonic()
    outcome = await runner.run(make_job("family", [str(pidfile), "stubborn"]), 1, 0.3)
    elapsed = time.monotonic() - started
    assert 0.8 <= elapsed < 2.5  # timeout 0.3 + kill_after 0.5
    assert outcome.error == "timed out after 0.3s"
    assert outcome.result["exit_code"] == -signal.SIGKILL
    assert await gone(*pids(pidfile))


def vanished(pid: int) -> bool:
    """Not even a zombie: ended and reaped."""
    return not Path(f"/proc/{pid}").exists()


needs_setsid = pytest.mark.skipif(shutil.which("setsid") is None, reason="needs the setsid program (util-linux)")


# --- nothing outlives its job --------------------------------------------------------------------------------------
async def test_a_program_that_exits_0_while_a_child_holds_its_stdout_succeeds_quickly(
    runner: ExecRunner, pidfile: Path
) -> None:
    started = time.monotonic()
    outcome = await runner.run(make_job("orphan", [str(pidfile)]), 1, 10)
    assert time.monotonic() - started < 1.5  # not the 10 s timeout
    assert (outcome.ok, outcome.error) == (True, None)
    assert (outcome.result["exit_code"], outcome.result["stdout"]) == (0, "bye\n")
    assert vanished(pids(pidfile)[1])


async def test_a_background_child_of_a_program_that_exited_0_is_ended(runner: ExecRunner, pidfile: Path) -> None:
    outcome = await runner.run(make_job("orphan", [str(pidfile), "quiet"]), 1, 10)
    assert outcome.ok, outcome.error
    assert vanished(pids(pidfile)[1])


@needs_setsid
async def test_a_grandchild_that_left_the_session_ends_with_the_job(runner: ExecRunner, pidfile: Path) -> None:
    started = time.monotonic()
    outcome = await runner.run(make_job("orphan", [str(pidfile), "escape"]), 1, 10)
    assert time.monotonic() - started < 1.5
    assert (outcome.ok, outcome.result["stdout"]) == (True, "bye\n")
    assert vanished(pids(pidfile)[1])


@needs_setsid
async def test_a_grandchild_that_left_the_session_is_killed_at_timeout(runner: ExecRunner, pidfile: Path) -> None:
    started = time.monotonic()
    outcome = await runner.run(make_job("family", [str(pidfile), "escape"]), 1, 0.5)
    assert time.monotonic() - started < 1.5
    assert outcome.error == "timed out after 0.5s"
    assert outcome.result["exit_code"] == -signal.SIGTERM
    parent, child = pids(pidfile)
    assert await gone(parent)
    assert vanished(child)


async def test_a_program_that_left_nothing_costs_no_scan_of_proc(
    runner: ExecRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_scan() -> None:
        raise AssertionError("/proc was scanned")

    monkeypatch.setattr(leftovers, "scan", no_scan)
    runner.leaders |= leftovers._children_of_me() or set()  # servers this test process started are no leftovers
    outcome = await runner.run(make_job("add", "1 2"), 1, 10)
    assert (outcome.ok, outcome.result["stdout"]) == (True, "3")


@needs_setsid
async def test_only_the_jobs_own_processes_are_ended(runner: ExecRunner, tmp_path: Path) -> None:
    """Two attempts at once: the one that ends first leaves the other's processes alone."""
    slow_pids, quick_pids = tmp_path / "slow", tmp_path / "quick"
    slow = asyncio.create_task(runner.run(make_job("family", [str(slow_pids), "escape"], job_id="slow"), 1, 60))
    for _ in range(500):
        if pids_written(slow_pids):
            break
        await asyncio.sleep(0.01)
    outcome = await runner.run(make_job("orphan", [str(quick_pids), "escape"], job_id="quick"), 1, 10)
    assert outcome.ok and vanished(pids(quick_pids)[1])
    assert all(alive(pid) for pid in pids(slow_pids))
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert vanished(pids(slow_pids)[1])


async def test_cancelling_an_attempt_kills_the_group(runner: ExecRunner, pidfile: Path) -> None:
    task = asyncio.create_task(runner.run(make_job("family", [str(pidfile)]), 1, 60))
    for _ in range(200):
        if pids_written(pidfile):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gone(*pids(pidfile))
