"""wrk, driven with bench/post.lua: a warm-up run, then the measured run, parsed."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import subprocess
from pathlib import Path

from bench.procs import cpu_seconds

LUA = Path(__file__).with_name("post.lua")
DISTINCT_LUA = Path(__file__).with_name("post_distinct.lua")


@dataclasses.dataclass
class WrkRun:
    rps: float
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    output: str
    cpu_s: float | None = None  # CPU time the server used during the measured run

    @property
    def cpu_us_per_request(self) -> float | None:
        return None if self.cpu_s is None or not self.requests else self.cpu_s / self.requests * 1e6


def _parse(output: str) -> WrkRun:
    rps = re.search(r"Requests/sec:\s*([\d.]+)", output)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", output)
    if rps is None or total is None:
        raise RuntimeError(f"wrk printed no figures:\n{output}")
    seconds = float(total.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}.get(total.group(3), 1.0)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkRun(
        rps=float(rps.group(1)),
        requests=int(total.group(1)),
        seconds=seconds,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
        output=output,
    )


def _wrk(
    url: str, body_file: Path, *, connections: int, threads: int, seconds: float, token: str | None = None
) -> WrkRun:
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    args += ["-s", str(LUA), url, "--", str(body_file), *([token] if token else [])]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return _parse(done.stdout)


def post(
    url: str,
    body: bytes,
    workdir: Path,
    *,
    connections: int = 64,
    threads: int = 1,
    seconds: float = 10,
    warmup: float = 3,
    pid: int | None = None,
    token: str | None = None,
) -> WrkRun:
    """POST `body` as fast as wrk can for `seconds`, after `warmup` seconds that are not counted.

    With `pid`, the server's CPU time during the measured run is recorded too (a figure that other load on the
    machine changes less than req/s)."""
    body_file = workdir / f"body-{hashlib.sha1(body).hexdigest()[:10]}.json"
    body_file.write_bytes(body)
    if warmup > 0:
        _wrk(url, body_file, connections=connections, threads=threads, seconds=warmup, token=token)
    before = cpu_seconds(pid) if pid else 0.0
    run = _wrk(url, body_file, connections=connections, threads=threads, seconds=seconds, token=token)
    if pid:
        run.cpu_s = cpu_seconds(pid) - before
    return run


def post_distinct(url: str, extra: str, *, start: int, connections: int = 64, seconds: float = 10) -> WrkRun:
    """POST jobs that differ on every request (bench/post_distinct.lua), `extra` JSON appended to each."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    args += ["-s", str(DISTINCT_LUA), url, "--", extra, str(start)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return _parse(done.stdout)


def get(url: str, *, connections: int = 64, threads: int = 1, seconds: float = 5) -> WrkRun:
    """Plain GETs as fast as wrk can (how fast the target answers on its own)."""
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", url]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return _parse(done.stdout)
