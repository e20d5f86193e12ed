"""The command's log lines: the same text as logging's own format gives, written once per event-loop iteration."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from poulpe import logs


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def stream() -> Iterator[CountingStream]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure("info")
    counting = CountingStream()
    root.handlers[0].setStream(counting)  # type: ignore[attr-defined]
    yield counting
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_line_reads_as_logging_s_own_format_gives_it() -> None:
    record = logging.LogRecord("poulpe.jobs", logging.INFO, "", 0, "job %s %s attempt=%d", ("a1", "succeeded", 1), None)
    reference = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    assert logs.TextFormatter().format(record) == reference.format(record)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        failed = logging.LogRecord("poulpe", logging.ERROR, "", 0, "failed", None, sys.exc_info())
    assert logs.TextFormatter().format(failed) == reference.format(failed)


async def test_the_job_lines_of_one_loop_iteration_go_out_in_one_write(stream: CountingStream) -> None:
    jobs = logging.getLogger("poulpe.jobs")
    for n in range(50):
        jobs.info("job j%d succeeded attempt=1 worker=%d elapsed_ms=%.1f", n, n, 1.5)
    assert stream.writes == 0  # owed until the iteration ends
    await asyncio.sleep(0)
    assert stream.writes == 1
    lines = stream.getvalue().splitlines()
    assert len(lines) == 50
    assert lines[7].endswith("INFO    poulpe.jobs: job j7 succeeded attempt=1 worker=7 elapsed_ms=1.5")


async def test_a_line_from_another_thread_goes_out_at_once_after_those_waiting(stream: CountingStream) -> None:
    logging.getLogger("poulpe.jobs").info("first, from the loop")
    thread = threading.Thread(target=lambda: logging.getLogger("poulpe.store").error("second, from a thread"))
    thread.start()
    thread.join()
    assert [line.rpartition(": ")[2] for line in stream.getvalue().splitlines()] == [
        "first, from the loop",
        "second, from a thread",
    ]


async def test_lines_still_owed_are_written_when_logging_shuts_down(stream: CountingStream) -> None:
    logging.getLogger("poulpe.jobs").info("the last line before exit")
    logging.getLogger().handlers[0].flush()  # what logging.shutdown does at exit
    assert stream.getvalue().endswith("poulpe.jobs: the last line before exit\n")


def test_a_record_holds_what_logging_s_own_record_holds(stream: CountingStream) -> None:
    args = ("a1", "succeeded", 1)
    made = logging.getLogRecordFactory()("poulpe.jobs", logging.INFO, "(unknown file)", 0, "job %s %s %d", args, None)
    reference = logging.LogRecord("poulpe.jobs", logging.INFO, "(unknown file)", 0, "job %s %s %d", args, None)
    assert isinstance(made, logs.Record)
    times = {"created", "msecs", "relativeCreated"}
    assert {k: v for k, v in vars(made).items() if k not in times} == {
        k: v for k, v in vars(reference).items() if k not in times
    } | {"taskName": None}
    assert made.getMessage() == "job a1 succeeded 1"
    one_mapping = logging.getLogRecordFactory()("x", logging.INFO, "(unknown file)", 0, "%(a)s", ({"a": 1},), None)
    assert one_mapping.getMessage() == "1"
