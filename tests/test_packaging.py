"""What a new user and CI rely on: the README's commands are CI's, the scripts run, `poulpe` is installed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [*sorted((ROOT / "scripts").glob("*.sh")), ROOT / ".ci" / "run"]


def test_readme_gives_the_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "./scripts/test.sh" in ci_lines
    assert "./scripts/test.sh" in readme
    assert "./scripts/run.sh" in readme


def test_both_scripts_exist() -> None:
    assert {path.name for path in SCRIPTS} >= {"run.sh", "test.sh", "run"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_script_is_executable_and_parses(script: Path) -> None:
    assert os.access(script, os.X_OK), f"chmod +x {script.relative_to(ROOT)}"
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_pyproject_declares_the_poulpe_command() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["poulpe"] == "poulpe.cli:main"


def test_the_dashboard_ships_in_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["setuptools"]["package-data"]["poulpe.dashboard"]
    files = {path.name for path in (ROOT / "poulpe" / "dashboard").iterdir() if not path.name.endswith(".py")}
    assert {"index.html", "dashboard.js", "dashboard.css"} <= files
    assert all(any(Path(name).match(pattern) for pattern in shipped) for name in files - {"__pycache__"})


def fake_checkout(root: Path) -> Path:
    """The scripts, locks and pyproject.toml in `root`, with a .venv whose python only logs how pip was asked."""
    (root / "scripts").mkdir()
    for name in ("run.sh", "bootstrap.sh"):
        (root / "scripts" / name).write_bytes((ROOT / "scripts" / name).read_bytes())
        (root / "scripts" / name).chmod(0o755)
    for name in ("pyproject.toml", "requirements.lock", "requirements-test.lock"):
        (root / name).write_bytes((ROOT / name).read_bytes())
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\n[ "$1" = -m ] && echo "$*" >> {root}/pip.log\nexit 0\n')
    (bin_dir / "poulpe").write_text('#!/bin/sh\necho "poulpe $*"\n')
    for program in bin_dir.iterdir():
        program.chmod(0o755)
    return root / ".venv"


def stamp(venv: Path, lock: str) -> None:
    """What ./scripts/test.sh leaves after installing from `lock`: the hash of the lock and pyproject.toml."""
    text = (venv.parent / lock).read_bytes() + (venv.parent / "pyproject.toml").read_bytes()
    (venv / f".poulpe-stamp-{lock}").write_text(hashlib.sha256(text).hexdigest() + "\n")


def test_run_sh_uses_the_venv_test_sh_installed_without_reinstalling(tmp_path: Path) -> None:
    venv = fake_checkout(tmp_path)
    stamp(venv, "requirements-test.lock")  # ./scripts/test.sh ran: same versions, plus the test tools
    run = subprocess.run([tmp_path / "scripts" / "run.sh", "--version"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stdout == "poulpe --version\n"
    assert "==> pip install" not in run.stderr and not (tmp_path / "pip.log").exists()
    # a lock that changed since is installed again (the fake pip only notes it)
    (tmp_path / "requirements-test.lock").write_text("# changed\n")
    run = subprocess.run([tmp_path / "scripts" / "run.sh", "--version"], capture_output=True, text=True, timeout=30)
    assert "==> pip install -r requirements.lock" in run.stderr and run.stdout == "poulpe --version\n"
    assert "-r" in (tmp_path / "pip.log").read_text()
