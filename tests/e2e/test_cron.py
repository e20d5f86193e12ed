"""A cron file drives real jobs: per-second fires, EXEC lines, live reload, and a broken file refused."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.poulpe_process import Poulpe, free_port, poulpe_command
from tests.serving import ServedPoulpe
from tests.target import Target


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def fires(target: Target, key: str) -> int:
    return sum(1 for call in target.calls if call.query.get("key") == key)


def test_a_per_second_line_fires_the_target_about_once_a_second(
    served: Callable[..., ServedPoulpe], fresh_target: Target, exec_dir: Path, tmp_path: Path
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(
        "# sec min hour day month weekday year  name  method  params\n"
        f"*/1 * * * * * *  {fresh_target.url('/echo', key='tick')}  GET  a=1\n"
        "// an EXEC line every second too\n"
        "* * * * * * *  add  EXEC  12 34\n"
    )
    p = served("--cron", str(cron), "--exec_dir", str(exec_dir))  # no process boundary in this story
    time.sleep(4.2)
    assert 3 <= fires(fresh_target, "tick") <= 6
    ids = {call.job_id for call in fresh_target.calls if call.query.get("key") == "tick"}
    assert all(job_id and job_id.startswith("cron:") for job_id in ids) and len(ids) == fires(fresh_target, "tick")
    with p.client() as client:
        page = client.get("/jobs", params={"method": "EXEC", "status": "succeeded"}).json()
    assert page["total"] >= 3 and page["jobs"][0]["result"]["stdout"] == "46"


def test_editing_the_file_changes_the_schedule_without_a_restart(
    poulpe: Callable[..., Poulpe], fresh_target: Target, tmp_path: Path
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(f"* * * * * * *  {fresh_target.url('/echo', key='old')}  GET\n")
    p = poulpe("--cron", str(cron))
    assert wait_until(lambda: fires(fresh_target, "old") >= 1)
    cron.write_text(f"* * * * * * *  {fresh_target.url('/echo', key='new')}  GET\n")
    assert wait_until(lambda: fires(fresh_target, "new") >= 2)
    settled = fires(fresh_target, "old")
    time.sleep(1.5)
    assert fires(fresh_target, "old") == settled  # the old line is gone
    # a broken edit is refused and the schedule goes on
    cron.write_text("* * * * * *  too-few-fields GET\n")
    before = fires(fresh_target, "new")
    assert wait_until(lambda: fires(fresh_target, "new") >= before + 2)
    assert "line 1" in p.log() and "refused" in p.log()
    # SIGHUP reloads too
    cron.write_text(f"* * * * * * *  {fresh_target.url('/echo', key='hup')}  GET\n")
    assert p.proc is not None
    p.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: fires(fresh_target, "hup") >= 1)


def test_a_broken_file_refuses_to_start_with_its_line_number(tmp_path: Path) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text("# fine\n*/5 * * * * * * http://127.0.0.1:9/x GET\n0 0 24 * * * * http://127.0.0.1:9/x GET\n")
    run = subprocess.run(
        [*poulpe_command(), "--port", str(free_port()), "--data", str(tmp_path / "db"), "--cron", str(cron)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert "line 3" in run.stderr and "hour" in run.stderr
    check = subprocess.run([*poulpe_command(), "cron", "check", str(cron)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 2 and "line 3" in check.stderr


def test_cron_check_lists_the_next_fires(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "cron_task.example"
    flags = ["--exec_dir", str(example.parent / "examples" / "bin"), "--smtp_server", "127.0.0.1"]
    run = subprocess.run(
        [*poulpe_command(), "cron", "check", str(example), "--timezone", "Europe/Paris", *flags],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    assert "MAIL_TO" in run.stdout and ("+01:00" in run.stdout or "+02:00" in run.stdout)


def test_cron_check_flag_checks_the_file_and_exits(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("*/5 * * * * * * http://127.0.0.1:9/x GET\n")
    bad.write_text("\n\n*/5 * * * * * http://127.0.0.1:9/x GET\n")
    base = [*poulpe_command(), "--data", str(tmp_path / "db"), "--cron_check", "--cron"]
    ok = subprocess.run([*base, str(good)], capture_output=True, text=True, timeout=30)
    refused = subprocess.run([*base, str(bad)], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "valid" in ok.stdout
    assert refused.returncode == 2 and "line 3" in refused.stderr
