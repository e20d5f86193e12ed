"""An operator steers a running poulpe's cron lines with `poulpe cron list|run|pause|resume|backfill`, the real
command as a subprocess, by line id or line number."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from poulpe.cron import parse_cron
from tests.poulpe_process import poulpe_command
from tests.serving import ServedPoulpe
from tests.target import Target

TOKEN = "cron-cli-s3cret"


def run(proc: ServedPoulpe, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POULPE_")}
    env.update(POULPE_URL=proc.url, POULPE_TOKEN=TOKEN)
    return subprocess.run([*poulpe_command(), *args], capture_output=True, text=True, env=env, timeout=60)


def test_list_run_pause_resume_and_backfill_from_the_command_line(
    served: Callable[..., ServedPoulpe], fresh_target: Target, tmp_path: Path
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(
        "# two lines\n"
        f"[paused=true] * * * * * * *  {fresh_target.url('/echo', key='sec')}  GET\n"
        f"[tz=Asia/Tokyo] 0 0 9 1 1 * 2099  {fresh_target.url('/echo', key='far')}  GET\n"
    )
    sec, far = (line.fingerprint for line in parse_cron(cron.read_text()))
    proc = served("--cron", str(cron), env={"POULPE_TOKEN": TOKEN}, token=TOKEN)

    listed = run(proc, "cron", "list")
    assert listed.returncode == 0, listed.stderr
    assert sec in listed.stdout and far in listed.stdout and "paused" in listed.stdout and "Asia/Tokyo" in listed.stdout

    ran = run(proc, "cron", "run", "3")  # by line number
    assert ran.returncode == 0 and ran.stdout.startswith(f"cron:{far}:run:"), ran.stderr
    deadline = time.monotonic() + 5
    while not [c for c in fresh_target.calls if c.query.get("key") == "far"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    end = int(time.time()) - 2
    filled = run(proc, "cron", "backfill", sec, "--from", str(end - 4), "--to", str(end))
    assert filled.returncode == 0 and filled.stdout.strip() == "5 fire times, 5 new jobs (0 made before)"
    again = run(proc, "cron", "backfill", "2", "--from", str(end - 4), "--to", str(end))
    assert again.stdout.strip() == "5 fire times, 0 new jobs (5 made before)"

    resumed = run(proc, "cron", "resume", sec)
    assert resumed.returncode == 0 and resumed.stdout.strip() == f"cron line 2 ({sec}): running"
    paused = run(proc, "cron", "pause", "2", "--json")
    assert paused.returncode == 0 and '"paused": true' in paused.stdout

    missing = run(proc, "cron", "pause", "9")
    assert missing.returncode == 3 and "no job line at line 9" in missing.stderr
    unknown = run(proc, "cron", "run", "abcdefabcdef")
    assert unknown.returncode == 3 and "no cron line with id abcdefabcdef" in unknown.stderr
    bad = run(proc, "cron", "backfill", sec, "--from", "soon", "--to", str(end))
    assert bad.returncode == 2 and "from" in bad.stderr
