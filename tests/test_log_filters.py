"""What the log handler's filters let through: no credential, and one line per connection-layer condition."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from poulpe import logs
from poulpe.log_filters import _HINT, FloodGuard, _hinted, redact


@pytest.mark.parametrize(
    ("line", "clean"),
    [
        (
            '127.0.0.1:5 - "WebSocket /ws_task?token=abc123" [accepted]',
            '127.0.0.1:5 - "WebSocket /ws_task?token=***" [accepted]',
        ),
        ("GET /jobs?page=2&token=abc&size=5", "GET /jobs?page=2&token=***&size=5"),
        ("GET /x?access_token=abc%20d", "GET /x?access_token=***"),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
        ("Authorization: Basic cG91bHBlOnNlY3JldA==", "Authorization: Basic ***"),
        ("connecting to redis://:hunter22@cache:6379/0", "connecting to redis://***@cache:6379/0"),
        ("calling https://user:pa55@example.com/hook", "calling https://***@example.com/hook"),
        ("POULPE_SMTP_PWD=pa55word smtp_pwd=pa55word", "POULPE_SMTP_PWD=*** smtp_pwd=***"),
        ('{"password": "pa55word"}', '{"password": "***"}'),
        ("job abc-1 succeeded attempt=1 elapsed_ms=3.2", "job abc-1 succeeded attempt=1 elapsed_ms=3.2"),
    ],
)
def test_credentials_are_masked_and_ordinary_lines_kept(line: str, clean: str) -> None:
    assert redact(line) == clean


def test_known_secrets_are_masked_wherever_they_show() -> None:
    assert redact("signed with k3y-value-77 and k3y-value-77", ["k3y-value-77"]) == "signed with *** and ***"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure("debug", secrets=["sekrit-99"])
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_configured_handler_redacts_messages_and_tracebacks(captured: io.StringIO) -> None:
    log = logging.getLogger("poulpe.test")
    log.info("connected to %s", "redis://:sekrit-99@host/0")
    try:
        raise RuntimeError("login with token=sekrit-99 refused")
    except RuntimeError:
        log.exception("failed")
    assert "sekrit-99" not in captured.getvalue() and captured.getvalue().count("***") >= 2


def test_a_flood_becomes_one_line_then_a_count() -> None:
    now = [0.0]
    guard = FloodGuard(window=60, clock=lambda: now[0])
    passed = []
    for i in range(100_000):
        now[0] = i / 1000  # 100 s of a thousand failed accepts a second
        record = logging.LogRecord(
            "asyncio", logging.ERROR, "", 0, "socket.accept() out of system resource", None, None
        )
        if guard.filter(record):
            passed.append(record.getMessage())
    assert passed == [
        "socket.accept() out of system resource",
        "socket.accept() out of system resource (59999 more like this in the last 60 s)",
    ]
    # poulpe's own job lines are never held back
    job = logging.LogRecord("poulpe.jobs", logging.WARNING, "", 0, "job %s dead", ("a",), None)
    assert all(guard.filter(job) for _ in range(10))


@pytest.mark.parametrize(
    "line",
    [
        "job 3f2a1c9e-1b2c-4d3e-8f9a-0b1c2d3e4f50 succeeded attempt=1 worker=12 elapsed_ms=1.2",
        "calling https://ToKeN=abc", "PassWord: hunter22", "API_KEY=xyz", "Authorization: BEARER abc.def",
        "BaSiC Zm9vOmJhcg==", "mail to ops@example.com", "Bas\u0131c Zm9v", "\u017fecret=abc", "tOKEN=\u212a1",
    ],
)  # fmt: skip
def test_the_quick_look_for_credentials_sees_what_the_full_patterns_see(line: str) -> None:
    # ASCII lines are searched word by word, the others by the case-blind pattern: both see the same lines
    assert _hinted(line) == (_HINT.search(line) is not None)
