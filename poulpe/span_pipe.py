"""Finished attempt spans handed to poulpe's span export process (span_export.py), in batches, over its stdin.

Why a process: OpenTelemetry's OTLP encoder builds its protobuf in Python, about 20 µs a span; in an export thread
of poulpe's own process it held the GIL the event loop needs (docs/BENCHMARKS.md, "Tracing"). Here the event loop
only appends a tuple to a list; a thread of this module marshals the list every SEND_EVERY seconds (or at BATCH
spans) and writes it to the export process, the write releasing the GIL. Bounded like the SDK's own queue: while
the export process is behind, spans beyond MAX_PENDING are dropped (and counted in the log), a job never waits.
An export process that died is started again (at most once a second) and given the batch it missed; on stop the
last batch is written, the process's input closed, and it is waited for while it sends what it holds.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import subprocess
import sys
import threading
import time
from typing import IO

log = logging.getLogger(__name__)

# (the attempt's traceparent, the job's traceparent or None, tracestate or None, the job's method, start ns, end ns,
# job id, attempt, outcome, the job's status, key or None, error description or None when the status is unset): only
# strings and ints, which the event loop has at hand; the export process parses the ids and builds the attributes
Record = tuple[str, str | None, str | None, str, int, int, str, int, str, str, str | None, str | None]

SEND_EVERY = 0.2  # seconds between writes when fewer than BATCH spans wait
BATCH = 512
MAX_PENDING = 8192
RESTART_EVERY = 1.0  # seconds at least between two starts of the export process
STOP_WAIT = 35.0  # the export process's last sends: the SDK's processor bounds them at 30 s


class SpanPipe:
    def __init__(self, endpoint: str, *, node: str, version: str) -> None:
        self._command = [sys.executable, "-m", "poulpe.span_export", endpoint, node, version]
        self._pending: list[Record] = []
        self._wake = threading.Event()
        self._closing = False
        self._killed = False  # by close(): not to be started again
        self._child: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self.dropped = 0
        self.restarts = 0
        self._start()
        self._thread = threading.Thread(target=self._run, name="poulpe-span-pipe", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def send(self, record: Record) -> None:
        """On the event loop: the span waits for the next write (dropped when too many already wait)."""
        pending = self._pending
        if len(pending) >= MAX_PENDING:
            self.dropped += 1
            return
        pending.append(record)
        if len(pending) == BATCH:
            self._wake.set()

    def close(self) -> None:
        """The last batch is written, then the export process sends what it holds and ends (bounded wait)."""
        self._closing = True
        self._wake.set()
        self._thread.join(STOP_WAIT + 5)
        child = self._child
        if self._thread.is_alive() and child is not None:  # a write blocked by an export process that reads no more
            log.warning("the span export process took no spans for %.0f s: killed", STOP_WAIT)
            self._killed = True
            child.kill()
            self._thread.join(5)

    def _run(self) -> None:
        while True:
            self._wake.wait(SEND_EVERY)
            self._wake.clear()
            closing = self._closing
            # the list is swapped before it is read: an append racing the swap lands in the batch taken
            batch, self._pending = self._pending, []
            if self.dropped:
                log.warning("%d spans dropped: the span export process is behind", self.dropped)
                self.dropped = 0
            if batch or (self._child is not None and self._child.poll() is not None):
                self._write(batch)
            if closing:
                break
        self._stop()

    def _write(self, batch: list[Record]) -> None:
        data = marshal.dumps(batch)
        frame = len(data).to_bytes(4, "big") + data
        for _ in range(2):  # once more to a new export process when the first has died
            child = self._child
            if child is None or child.poll() is not None:
                if self._killed:
                    break
                child = self._restart()
                if child is None:
                    break
            if not batch:
                return
            try:
                stdin: IO[bytes] | None = child.stdin
                assert stdin is not None
                stdin.write(frame)
                stdin.flush()
                return
            except OSError:  # BrokenPipeError: the export process ended meanwhile
                child.wait()
        if batch:
            log.warning("%d spans dropped: the span export process could not be started", len(batch))

    def _restart(self) -> subprocess.Popen[bytes] | None:
        if self._child is not None:
            log.warning("the span export process ended (exit code %s): starting another", self._child.returncode)
            self.restarts += 1
            if self._child.stdin is not None:
                with contextlib.suppress(OSError):  # what the dead process did not read
                    self._child.stdin.close()
        time.sleep(max(0.0, self._started_at + RESTART_EVERY - time.monotonic()))
        return self._start()

    def _start(self) -> subprocess.Popen[bytes] | None:
        self._started_at = time.monotonic()
        try:
            # its stderr is poulpe's (the SDK's warnings); it prints nothing on stdout, which it leaves to poulpe alone
            self._child = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        except OSError as error:
            log.error("the span export process could not be started: %s", error)
            self._child = None
        return self._child

    def _stop(self) -> None:
        child = self._child
        if child is None:
            return
        if child.stdin is not None:
            with contextlib.suppress(OSError):  # the export process ended meanwhile
                child.stdin.close()
        try:
            child.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            log.warning("the span export process did not end within %.0f s: killed", STOP_WAIT)
            child.kill()
            child.wait()
