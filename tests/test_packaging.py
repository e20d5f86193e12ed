"""What a new user and CI rely on: the README's commands are CI's, the scripts run, `poulpe` is installed."""

from __future__ import annotations

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
