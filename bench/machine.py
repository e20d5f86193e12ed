"""What the figures were measured on: the machine (from /proc) and the versions of everything in the path."""

from __future__ import annotations

import os
import platform
import re
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("poulpe", "uvicorn", "starlette", "aiohttp", "httpx", "msgspec", "uvloop", "httptools")


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    return {
        "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
        "cores": str(os.cpu_count()),
        "ram": f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "unknown",
        "kernel": platform.release(),
    }


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=5)
        match = re.search(r"wrk (\S+)", out.stdout + out.stderr)
        found["wrk"] = match.group(1) if match else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        found["wrk"] = "absent"
    return found


def loadavg() -> str:
    """The 1-minute load average: a busy machine (another test suite running) shows here."""
    return Path("/proc/loadavg").read_text().split()[0]
