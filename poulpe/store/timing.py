"""Each store times its own operations, for `/metrics`' `poulpe_store_operation_seconds{op}` and
`poulpe_store_errors_total{op}`.

A contract operation of a backend runs its body under `with self._timed("add"):`, which hands the operation's
duration, and whether it raised, to that operation's meter, and nothing else: the job never passes through here (a
wrapper of the calls would be handed every call's arguments, and so sit on the job's path). The meters are set on one
store object, the one the manager uses (metrics.py, `Metrics.time_store`); a store nobody meters (a partition of
--partitions, a test's store) enters an empty context.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from time import perf_counter
from types import TracebackType

# One operation's meter: (told the seconds of each call, told each call that raised)
Meter = tuple[Callable[[float], None], Callable[[], None]]
_UNTIMED = contextlib.nullcontext()


class Timed:
    """Store inherits this: `time_operations` sets the meters, each operation opens `self._timed(its name)`."""

    _meters: _Meters | None = None

    def time_operations(self, meter: Callable[[str], Meter]) -> None:
        """Meter each operation of this store object: `meter(its name)` is asked once per operation, at its first
        call (the series of an operation never called are not made)."""
        self._meters = _Meters(meter)

    def _timed(self, op: str) -> AbstractContextManager[None]:
        meters = self._meters
        if meters is None:
            return _UNTIMED
        timing = _Timing()  # filled here rather than by an __init__: a call less on every operation
        timing.seconds, timing.failed = meters[op]
        timing.started = perf_counter()
        return timing


class _Meters(dict[str, Meter]):
    def __init__(self, meter: Callable[[str], Meter]) -> None:
        super().__init__()
        self._meter = meter

    def __missing__(self, op: str) -> Meter:
        found = self[op] = self._meter(op)
        return found


class _Timing:
    """One call's timing: started as the operation begins, told as it ends (an exception, a cancellation included,
    is a failure)."""

    __slots__ = ("failed", "seconds", "started")
    seconds: Callable[[float], None]
    failed: Callable[[], None]
    started: float

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is not None:
            self.failed()
        self.seconds(perf_counter() - self.started)
