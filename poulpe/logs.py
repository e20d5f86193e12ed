"""Logging set-up, done once by the command line (libraries only log)."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable

from poulpe.log_filters import FloodGuard, Redactor


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


def configure(level: str = "info", *, json_lines: bool = False, secrets: Iterable[str] = ()) -> None:
    """Log to stderr; every line passes the flood guard and the redactor (which masks `secrets` by value too)."""
    # No line shows the caller's file, thread or process: logging need not look them up for every record.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
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
