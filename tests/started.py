"""One factory for the poulpes a test starts, of either kind: a subprocess (`Poulpe`) or served in-process."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Generic, TypeVar

from tests.poulpe_process import Poulpe
from tests.serving import ServedPoulpe

P = TypeVar("P", Poulpe, ServedPoulpe)


class Started(Generic[P]):
    """Starts poulpes of one kind under `root` with extra flags: `start("--workers", "2")`; `stop_all()` stops them."""

    def __init__(self, kind: type[P], root: Path) -> None:
        self.kind = kind
        self.root = root
        self.started: list[P] = []

    def __call__(self, *flags: str, env: dict[str, str] | None = None, token: str | None = None, home: str = "p") -> P:
        proc = self.kind(self.root / home, *flags, env=env, token=token)
        self.started.append(proc)
        proc.start()
        return proc

    def many(self, *flags: str, homes: Sequence[str], env: dict[str, str] | None = None) -> list[P]:
        """Start one with these flags under each of `homes`, all at the same time: a process's start is mostly its
        imports and its first /health, so three take about as long as one. In-process servers share the test's
        logging and environment, so they start one after the other."""
        if self.kind is not Poulpe:
            return [self(*flags, env=env, home=home) for home in homes]
        procs = [self.kind(self.root / home, *flags, env=env) for home in homes]
        self.started.extend(procs)
        with ThreadPoolExecutor(len(procs)) as pool:
            list(pool.map(lambda proc: proc.start(), procs))
        return procs

    def stop_all(self) -> None:
        """Stop every one, then report the first that failed (an in-process server that crashed while it served).

        Processes drain at the same time (each gets SIGTERM at once, as a deployment's would): a test that leaves
        three processes with slow jobs waits for the slowest drain, not the sum of them. In-process servers share
        the test's logging, so they stop one after the other."""
        failures: list[Exception] = []

        def stop(proc: P) -> None:
            try:
                proc.stop()
            except Exception as exc:
                failures.append(exc)

        if self.kind is Poulpe and len(self.started) > 1:
            with ThreadPoolExecutor(len(self.started)) as pool:
                list(pool.map(stop, self.started))
        else:
            for proc in self.started:
                stop(proc)
        if failures:
            raise failures[0]
