"""Filters on the log handler: no credential in any line (uvicorn's included), and no flood from the connection layer.

They sit on the handler, not on poulpe's loggers, so every record passes them: uvicorn's access and WebSocket lines
(which carry the request's query string), asyncio's, and tracebacks.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable

MASK = "***"

# `token=...` in a query string or a sentence, `Bearer ...`/`Basic ...` credentials, and `user:password@` in a URL
_PATTERNS = (
    (
        re.compile(
            r"(?i)((?:access_|auth_|api_)?token|password|passwd|pwd|secret|signing_key|api_?key)"
            r"(=|%3D|\"?\s*:\s*\"?)([^\s&\"',;)]+)"
        ),
        r"\1\2" + MASK,
    ),
    (re.compile(r"(?i)\b(bearer|basic)(\s+|%20|\+)[A-Za-z0-9._~+/=-]+"), r"\1\2" + MASK),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@:]*:[^\s/@]*@"), r"\1" + MASK + "@"),
)
_HINT = re.compile(r"(?i)token|passw|pwd|secret|key|bearer|basic|@")
_HINT_WORDS = ("token", "passw", "pwd", "secret", "key", "bearer", "basic", "@")  # _HINT's, for ASCII text


def _hinted(text: str) -> bool:
    """Whether `text` may show a credential (_HINT finds one of its words). Most lines are ASCII: lowered once and
    searched for each word, about a tenth of the cost of the case-blind regular expression (which, beyond ASCII,
    also matches letters such as the dotless i (U+0131) for i, so other text still goes through it)."""
    if not text.isascii():
        return _HINT.search(text) is not None
    lowered = text.lower()
    for word in _HINT_WORDS:  # noqa: SIM110 (a plain loop: half the cost of any() over a generator, every line)
        if word in lowered:
            return True
    return False


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every credential it shows replaced by ***: the known secret values, and anything that looks
    like a token, a password or a URL's credentials."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if not _hinted(text):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class Redactor(logging.Filter):
    """Rewrites each record's message and traceback through `redact`, before any formatter sees them."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # short values would mask ordinary words; the patterns still catch them where they appear as credentials
        self.secrets = tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True))
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


class FloodGuard(logging.Filter):
    """One line per condition, then a count. The connection layer logs a line for each bad request, refused head or
    failed accept, which a client can make happen a million times a minute. For poulpe.http_protocol's lines and
    uvicorn's and asyncio's warnings, the first record of a condition (its message template) passes; the same
    condition within `window` seconds is only counted, and the next line that passes says how many were held."""

    OWN = "poulpe.http_protocol"  # every line it writes is about a connection
    OTHERS = ("uvicorn.error", "asyncio")  # their warnings and errors; uvicorn's info lines pass

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # condition → (when a line last passed, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.OWN) and (
            record.levelno < logging.WARNING or not record.name.startswith(self.OTHERS)
        ):
            return True
        condition = (record.name, str(record.msg).partition("\n")[0])
        now = self.clock()
        last, held = self._seen.get(condition, (-self.window, 0))
        if now - last < self.window:
            self._seen[condition] = (last, held + 1)
            return False
        if len(self._seen) > 1000:  # conditions are a handful of templates; this only bounds a pathological case
            self._seen.clear()
        self._seen[condition] = (now, 0)
        if held:
            record.msg = f"{record.getMessage()} ({held} more like this in the last {now - last:.0f} s)"
            record.args = None
        return True
