"""EXEC jobs end to end: kingtask's `add` example, failures into the dead letters, and nothing escapes exec_dir."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import copy_programs
from tests.e2e.helpers import accepted, dead_letter_path, result, submit
from tests.poulpe_process import Poulpe
from tests.serving import ServedPoulpe

SHELL_TRICKS = ["; touch CANARY", "$(touch CANARY)", "`touch CANARY`", "| touch CANARY", "&& touch CANARY"]


def canaries(folders: list[Path]) -> list[Path]:
    """Every file named like CANARY under the folders, and in our own working directory (poulpe's too)."""
    found = [p for p in Path.cwd().iterdir() if "CANARY" in p.name]
    for folder in folders:
        found.extend(p for p in folder.rglob("*") if "CANARY" in p.name)
    return found


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Poulpe, Path]]:
    """One poulpe for the module (starting one per test costs more than the tests), with its own exec_dir."""
    home = tmp_path_factory.mktemp("exec")
    folder = copy_programs(home / "bin")
    proc = Poulpe(home / "p", "--workers", "2", "--exec_dir", str(folder)).start()
    yield proc, folder
    proc.stop()


@pytest.fixture
def runner(shared: tuple[Poulpe, Path]) -> Poulpe:
    return shared[0]


@pytest.fixture
def bin_dir(shared: tuple[Poulpe, Path]) -> Path:
    return shared[1]


@pytest.fixture
def places(shared: tuple[Poulpe, Path], tmp_path: Path) -> list[Path]:
    """Where a canary could land: the programs' cwd, poulpe's home and this test's tmp dir."""
    return [shared[1], shared[0].home, tmp_path]


def test_kingtask_add_example(runner: Poulpe) -> None:
    with runner.client() as client:
        answer = submit(client, id="add-1", method="EXEC", name="add", params="12 34", wait=20)

    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert done["status"] == "succeeded"
    assert done["method"] == "EXEC"
    assert done["result"]["stdout"] == "46"
    assert done["result"]["exit_code"] == 0
    assert done["result"]["stderr"] == ""
    assert done["error"] is None


def test_add_with_arguments_as_an_array(runner: Poulpe) -> None:
    with runner.client() as client:
        accepted(client, id="add-arr", method="exec", name="add", params=["-2", "7"])
        done = result(client, "add-arr")
    assert done["status"] == "succeeded"
    assert done["result"]["stdout"] == "5"


def test_a_failing_program_is_dead_with_its_stderr_and_a_dead_letter(runner: Poulpe) -> None:
    with runner.client() as client:
        accepted(client, id="add-bad", method="EXEC", name="add", params="12 douze", retry={"max": 0})
        done = result(client, "add-bad")

        assert done["status"] == "dead"
        assert done["attempts"] == 1
        assert done["result"]["exit_code"] == 2
        assert "douze is not an integer" in done["result"]["stderr"]
        assert "douze is not an integer" in done["error"]
        [attempt] = done["history"]
        assert attempt["ok"] is False and "douze" in attempt["error"]

        letter = dead_letter_path(runner.home / "dead", done)
        assert letter.is_file(), sorted(str(p) for p in (runner.home / "dead").rglob("*"))
        record = json.loads(letter.read_text())
        assert record["id"] == "add-bad"
        assert record["params"] == "12 douze"
        assert record["status"] == "dead"
        assert len(record["history"]) == 1
        assert client.get("/dead/add-bad").status_code == 200


def test_the_program_gets_a_minimal_environment_and_runs_in_exec_dir(
    poulpe: Callable[..., Poulpe], exec_dir: Path
) -> None:
    proc = poulpe("--exec_dir", str(exec_dir), env={"POULPE_SIGNING_KEY": "s3cret-signing-key", "AWS_SECRET": "x"})
    with proc.client() as client:
        done = submit(client, id="env", method="EXEC", name="showenv", wait=20).json()

    assert done["status"] == "succeeded", done
    lines = done["result"]["stdout"].splitlines()
    assert lines[0] == f"cwd={os.path.realpath(exec_dir)}"
    env = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    assert env["POULPE_JOB_ID"] == "env"
    assert env["POULPE_ATTEMPT"] == "1"
    assert {"PATH", "LANG"} <= env.keys()
    shell_own = {"PWD", "SHLVL", "_", "OLDPWD"}
    assert env.keys() - shell_own == {"PATH", "LANG", "POULPE_JOB_ID", "POULPE_ATTEMPT"}
    assert "s3cret-signing-key" not in done["result"]["stdout"]


@pytest.mark.parametrize(
    "name",
    [
        *["../add", "../bin/add", "..", ".", "../../etc/passwd", "/bin/sh", "/usr/bin/touch", "sub/add"],
        *["add; touch CANARY", "$(touch CANARY)", "`touch CANARY`", "add | touch CANARY", "nothing-here"],
    ],
)
def test_a_program_outside_exec_dir_is_refused(runner: Poulpe, places: list[Path], name: str) -> None:
    with runner.client() as client:
        answer = submit(client, method="EXEC", name=name, params="CANARY")

    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "name"
    assert answer.json()["result"] == "Fail"
    assert canaries(places) == []


def evil_program(tmp_path: Path) -> Path:
    """An executable outside exec_dir that would leave a canary if it ever ran."""
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = outside / "evil"
    evil.write_text(f"#!/bin/sh\ntouch {outside}/CANARY\n")
    evil.chmod(evil.stat().st_mode | stat.S_IXUSR)
    return evil


def test_a_symlink_leading_outside_exec_dir_is_refused(
    runner: Poulpe, bin_dir: Path, tmp_path: Path, places: list[Path]
) -> None:
    evil = evil_program(tmp_path)
    (bin_dir / "evil").symlink_to(evil)
    (bin_dir / "hop").symlink_to(bin_dir / "evil")  # a chain of links ends outside too

    with runner.client() as client:
        for name in ("evil", "hop"):
            answer = submit(client, method="EXEC", name=name)
            assert answer.status_code == 400, answer.text
            assert answer.json()["field"] == "name"
    assert canaries(places) == []


def test_a_program_swapped_for_a_symlink_after_intake_does_not_run(
    runner: Poulpe, bin_dir: Path, tmp_path: Path, places: list[Path]
) -> None:
    evil = evil_program(tmp_path)
    swapped = bin_dir / "swapped"
    swapped.write_text("#!/bin/sh\necho fine\n")
    swapped.chmod(swapped.stat().st_mode | stat.S_IXUSR)

    with runner.client() as client:
        accepted(client, id="swap", method="EXEC", name="swapped", delay=1, retry={"max": 2, "interval": 0.1})
        swapped.unlink()
        swapped.symlink_to(evil)
        done = result(client, "swap")

    assert done["status"] == "dead"
    assert "outside" in done["error"]
    assert canaries(places) == []


@pytest.mark.parametrize("params", [*SHELL_TRICKS, SHELL_TRICKS], ids=[*SHELL_TRICKS, "array"])
def test_shell_metacharacters_in_params_are_plain_arguments(
    runner: Poulpe, places: list[Path], params: str | list[str]
) -> None:
    with runner.client() as client:
        answer = submit(client, method="EXEC", name="echoargs", params=params, wait=20)
        assert answer.status_code == 200, answer.text
        done = answer.json()
        bad_add = submit(client, method="EXEC", name="add", params=params, retry={"max": 0}, wait=20).json()

    assert done["status"] == "succeeded"
    printed = done["result"]["stdout"].splitlines()
    if isinstance(params, list):
        assert printed == params  # each element is one argument, exactly as sent
    else:
        assert " ".join(printed) == params  # split on spaces like a shell would, nothing run or expanded
    assert bad_add["status"] == "dead"
    assert canaries(places) == []


def test_unbalanced_quotes_in_params_are_refused_naming_params(runner: Poulpe) -> None:
    with runner.client() as client:
        answer = submit(client, method="EXEC", name="echoargs", params="'unclosed")
    assert answer.status_code == 400
    assert answer.json()["field"] == "params"


def test_exec_without_exec_dir_is_refused(served: Callable[..., ServedPoulpe]) -> None:
    """Served in-process: with no --exec_dir there is no exec runner (which makes its process a subreaper)."""
    proc = served("--workers", "1")
    with proc.client() as client:
        answer = submit(client, method="EXEC", name="add", params="1 2")
        as_batch = client.post("/task_in_queue", json=[{"method": "EXEC", "name": "add", "params": "1 2"}])

    assert answer.status_code == 400
    assert answer.json()["field"] == "method"
    assert "EXEC" in answer.json()["error"]
    assert as_batch.status_code == 207
    assert as_batch.json()[0]["field"] == "method"


def test_a_quoted_argument_stays_one_argument(runner: Poulpe) -> None:
    with runner.client() as client:
        done = submit(client, method="EXEC", name="echoargs", params="'two words' \"and $HOME\" x", wait=20).json()
    assert done["result"]["stdout"].splitlines() == ["two words", "and $HOME", "x"]


def test_a_daemon_that_left_the_session_ends_with_its_job(runner: Poulpe, tmp_path: Path) -> None:
    """`setsid sleep 300 &` then exit 0: the job succeeds at once, and the daemon is gone (ended and reaped)."""
    pidfile = tmp_path / "pids"
    with runner.client() as client:
        answer = submit(client, id="daemon-1", method="EXEC", name="orphan", params=[str(pidfile), "escape"], wait=20)
    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert (done["status"], done["result"]["exit_code"], done["result"]["stdout"]) == ("succeeded", 0, "bye\n")
    daemon = int(pidfile.read_text().split()[1])
    try:
        assert not Path(f"/proc/{daemon}").exists()
    finally:
        if Path(f"/proc/{daemon}").exists():
            os.kill(daemon, 9)
