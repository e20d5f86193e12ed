"""Logging set-up, done once by the command line (libraries only log)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from poulpe.log_filters import FloodGuard, Redactor

_UNKNOWN = "(unknown file)"  # what logging records as a line's file once it no longer looks the caller up
_PROBE = logging.LogRecord("poulpe", logging.INFO, _UNKNOWN, 0, "", None, None)
_LOGGING_STARTED = _PROBE.created - _PROBE.relativeCreated / 1000  # logging's start, read from its public fields


class Record(logging.LogRecord):
    """logging.LogRecord with the same fields, set without the look-ups `configure` turned off: the caller's file
    (basename and splitext of "(unknown file)" are itself), thread and process. A line's record is a job's cost:
    3 µs made by LogRecord, under 1 µs here. Anything else (a caller's file given, one mapping as the arguments,
    thread or process names turned on again) is made by LogRecord itself."""

    def __init__(
        self,
        name: str,
        level: int,
        pathname: str,
        lineno: int,
        msg: object,
        args: Any,
        exc_info: Any,
        func: str | None = None,
        sinfo: str | None = None,
        **kwargs: Any,
    ) -> None:
        if (
            pathname != _UNKNOWN
            or logging.logThreads
            or logging.logProcesses
            or logging.logMultiprocessing
            or (args and len(args) == 1 and isinstance(args[0], Mapping))
        ):
            super().__init__(name, level, pathname, lineno, msg, args, exc_info, func, sinfo, **kwargs)
            return
        created = time.time()
        self.name, self.msg, self.args = name, msg, args
        self.levelname, self.levelno = logging.getLevelName(level), level
        self.pathname = self.filename = self.module = pathname
        self.exc_info, self.exc_text, self.stack_info = exc_info, None, sinfo
        self.lineno, self.funcName = lineno, func  # type: ignore[assignment]
        self.created = created
        self.msecs = int((created - int(created)) * 1000) + 0.0
        self.relativeCreated = (created - _LOGGING_STARTED) * 1000
        self.thread = self.threadName = self.processName = self.process = None
        self.taskName = None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:  # the redacted traceback (poulpe.log_filters)
            entry["exc"] = record.exc_text
        elif record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time level logger: message`, the time's text made once a second (not once a line: one line ends each
    attempt, so a line's cost is a job's cost)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self._second = -1
        self._text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._text = second, time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
        return f"{self._text},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        """logging.Formatter.format with the format string above, spelled out: the same line for a third of the
        cost (no style object, no mapping look-ups)."""
        record.message = record.getMessage()
        record.asctime = self.formatTime(record)
        line = f"{record.asctime} {record.levelname:<7} {record.name}: {record.message}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


class LoopLines(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes the lines of one event-loop iteration together: one write system call for all
    the job lines a busy loop logs in a turn, not one each. Outside the event loop's thread (the SQLite writer, a
    thread pool), or with no loop running, a line is written at once, after those waiting. A line waits at most
    until its loop iteration ends; `flush` (called at exit by logging.shutdown) writes what waits."""

    terminator = "\n"

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if len(self._lines) == 1:  # the first line of this iteration: the write is owed at its end
            loop.call_soon(self._write_owed)

    def _write_owed(self) -> None:
        self.acquire()
        try:
            self.flush()
        finally:
            self.release()

    def flush(self) -> None:
        """Write the lines waiting, then flush the stream (called with the handler's lock held, or at exit)."""
        lines, self._lines = self._lines, []
        try:
            if lines:
                self.stream.write(self.terminator.join(lines) + self.terminator)
            super().flush()
        except Exception:  # a closed or broken stream: as logging.StreamHandler, never raise into the caller
            if lines:
                self.handleError(logging.makeLogRecord({"msg": lines[0]}))


def configure(level: str = "info", *, json_lines: bool = False, secrets: Iterable[str] = ()) -> None:
    """Log to stderr; every line passes the flood guard and the redactor (which masks `secrets` by value too)."""
    # No line shows the caller's file, thread or process: logging need not look them up for every record.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.setLogRecordFactory(Record)
    handler = LoopLines(sys.stderr)
    handler.addFilter(FloodGuard())
    handler.addFilter(Redactor(secrets))
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # aiokafka logs every failed try; poulpe.kafka logs each change of connection state once instead
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
