"""The Docker image itself, built from the Dockerfile and started: scripts/check_image.sh, with no Docker engine.

The script needs root (debootstrap, podman's storage, chroot) and Debian's and PyPI's servers, as ./scripts/test.sh
does. Under a minute with its base cached, 75 s from nothing (docs/operating.md gives the numbers).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_image.sh"


@pytest.mark.timeout(900)
def test_the_image_serves_health_runs_jobs_as_its_user_and_drains_on_sigterm() -> None:
    run = subprocess.run([SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=880)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output

    assert 'GET /health: {"ok":true}' in run.stdout
    # The poulpe process and the program of its EXEC job both run as the image's user, never root.
    assert "poulpe runs as uid 10001" in run.stdout
    assert "status succeeded, exit code 0, stdout: uid=10001(poulpe) gid=10001(poulpe)" in run.stdout
    # docker stop: SIGTERM while a 3 s job runs; poulpe lets it finish, then exits 0.
    assert "poulpe exited with status 0" in run.stdout
    assert "job drain-check succeeded" in run.stdout.partition("after SIGTERM")[2]
