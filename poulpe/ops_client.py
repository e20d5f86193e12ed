"""What the operator commands (ops_cli.py) share: the HTTP client that talks to a running poulpe, the exit
statuses, and the readable output (tables, times, a job)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

OK, FAILED, REFUSED, NOT_FOUND, NOT_FINAL, UNREACHABLE, UNAUTHORIZED = 0, 1, 2, 3, 4, 5, 6
FINAL = {"succeeded", "dead", "cancelled"}
CELL = 60  # widest table cell; longer values are cut with an ellipsis


class CommandError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message, self.code = message, code


class Client:
    """JSON over HTTP with the stdlib. Proxies are not used: poulpe is an internal service."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Any = None, *, timeout: float = 30.0) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=timeout) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CommandError(f"cannot reach poulpe at {self.url}: {reason}", UNREACHABLE) from None

    def expect(self, method: str, path: str, body: Any = None, *, timeout: float = 30.0) -> tuple[int, Any]:
        """The answer when it is a success (2xx); a CommandError with the right exit status otherwise."""
        status, answer = self.call(method, path, body, timeout=timeout)
        if status < 300:
            return status, answer
        raise CommandError(_error_text(status, answer), _exit_for(status))


def _json(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return {"error": data[:200].decode("utf-8", "replace")}


def _error_text(status: int, answer: Any) -> str:
    error = answer.get("error") if isinstance(answer, dict) else None
    field = answer.get("field") if isinstance(answer, dict) else None
    text = f"{status}: {error or 'error'}" + (f" (field {field})" if field else "")
    if status == 401:
        text += ": set POULPE_TOKEN"
    return text


def _exit_for(status: int) -> int:
    if status == 401:
        return UNAUTHORIZED
    if status == 404:
        return NOT_FOUND
    if status >= 500:
        return UNREACHABLE
    return REFUSED


# --- output ------------------------------------------------------------------------------------------------
def clean(value: Any) -> str:
    """A value as one printable line: a job's name may hold terminal escape sequences."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[clean(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def when(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def show_job(job: dict[str, Any]) -> str:
    fields = [
        ("id", job.get("id")),
        ("method", job.get("method")),
        ("name", job.get("name")),
        ("status", job.get("status")),
        ("attempts", job.get("attempts")),
        ("created", when(job.get("created_at"))),
        ("run at", when(job.get("run_at"))),
        ("finished", when(job.get("finished_at"))),
        ("error", job.get("error")),
    ]
    out = [f"{key + ':':<10}{clean(value)}" for key, value in fields if value not in (None, "")]
    history = job.get("history") or []
    if history:
        rows = [
            [
                a.get("n"),
                a.get("worker"),
                when(a.get("started_at")),
                f"{(a['finished_at'] - a['started_at']) * 1000:.1f} ms" if a.get("finished_at") else "running",
                {True: "yes", False: "no"}.get(a.get("ok"), ""),
                a.get("error"),
            ]
            for a in history
        ]
        out += ["", table(["#", "worker", "started", "took", "ok", "error"], rows)]
    if job.get("result") is not None:
        out += ["", "result:", json.dumps(job["result"], indent=2, ensure_ascii=False)]
    return "\n".join(out)
