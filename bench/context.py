"""What every measurement gets: its work dir, its processes, and whether this is a --quick run."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, TypeVar

from bench.procs import Proc, Procs

T = TypeVar("T")


@dataclasses.dataclass
class Context:
    quick: bool
    workdir: Path
    procs: Procs

    def pick(self, full: T, quick: T) -> T:
        """The full run's value, or the --quick one."""
        return quick if self.quick else full

    def log(self, message: str) -> None:
        print(f"    {message}", file=sys.stderr, flush=True)

    async def client(self, name: str, *args: str, within: float) -> dict[str, Any]:
        """Run `python -m bench.client args` to its end and return the JSON line it printed last."""
        proc = self.procs.module(name, "client", *args).start(stdout_pipe=True)
        return await finish_client(proc, within)


async def finish_client(proc: Proc, within: float) -> dict[str, Any]:
    assert proc.popen is not None and proc.popen.stdout is not None
    out = await asyncio.wait_for(asyncio.to_thread(proc.popen.stdout.read), within)
    await asyncio.to_thread(proc.popen.wait, 10)
    lines = out.decode(errors="replace").strip().splitlines()
    if proc.popen.returncode != 0 or not lines:
        raise RuntimeError(f"{proc.name} failed ({proc.popen.returncode}):\n{proc.tail()}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
