"""The connection layer under clients that misbehave: raw UTF-8 in a request line, idle sockets by the thousand
under a small open-file limit, huge request heads, malformed HTTP. poulpe keeps answering, in JSON."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from poulpe import http_protocol
from tests.poulpe_process import Poulpe
from tests.serving import ServedPoulpe

FILE_LIMIT = 1024


def raw(p: Poulpe, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are on a fresh socket; the answer's status, headers and body."""
    with socket.create_connection(("127.0.0.1", p.port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_answer(sock)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: poulpe\r\nConnection: close\r\n\r\n".encode()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Limited(Poulpe):
    """poulpe started under an open-file limit; with soft and hard both FILE_LIMIT, it cannot raise it."""

    def __init__(self, home: Path, *, soft: int = FILE_LIMIT, hard: int = FILE_LIMIT) -> None:
        super().__init__(home)
        self.soft, self.hard = soft, hard

    def args(self) -> list[str]:
        limit = f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, ({self.soft}, {self.hard}))"
        return [sys.executable, "-c", f"{limit}; os.execvp(sys.argv[1], sys.argv[1:])", *super().args()]


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Limited]:
    proc = Limited(tmp_path / "limited")
    proc.start()
    yield proc
    proc.stop()


def test_a_request_line_with_raw_utf8_reaches_the_route_decoded(served: Callable[..., ServedPoulpe]) -> None:
    p = served()
    name = "http://127.0.0.1:9/工兵名字"
    with p.client() as client:
        assert client.post("/task_in_queue", json={"method": "GET", "name": name, "delay": 3600}).status_code == 202
    # what curl and Go send for `?name=工兵名字`: the UTF-8 bytes, unencoded, in the request line
    status, headers, body = raw(p, get(f"/jobs?name={name}"))
    assert status == 200 and headers["content-type"] == "application/json"
    assert [job["name"] for job in json.loads(body)["jobs"]] == [name]
    status, headers, body = raw(p, get("/jobs/工兵"))
    assert (status, json.loads(body)["error"]) == (404, "no job with id 工兵")
    status, headers, body = raw(p, get("/sayhi?type=下载&name=工兵名字"))  # a UTF-8 type too; easyTask's bare OK
    assert (status, body) == (200, b"OK") and headers["content-type"].startswith("text/plain")


def test_malformed_http_is_answered_in_json(served: Callable[..., ServedPoulpe]) -> None:
    p = served()
    for garbage in (
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost poulpe\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
    ):
        status, headers, body = raw(p, garbage)
        assert (status, headers["content-type"]) == (400, "application/json")
        assert json.loads(body) == {"result": "Fail", "error": "the request is not valid HTTP/1.1", "field": None}
    for _ in range(300):
        raw(p, b"NOT HTTP AT ALL\r\n\r\n")
    assert p.log().count("Invalid HTTP request received") == 1  # one line per condition, then a count


def test_a_ten_megabyte_header_is_refused_with_431_in_little_cpu(poulpe: Callable[..., Poulpe]) -> None:
    p = poulpe()
    assert p.proc is not None
    before = cpu_seconds(p.proc.pid)
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as sock:
        huge = b"GET /health HTTP/1.1\r\nHost: poulpe\r\nX-Huge: " + b"a" * (10 * 1024 * 1024) + b"\r\n\r\n"

        def send() -> None:
            with contextlib.suppress(OSError):  # poulpe may close once it has answered: the rest is not needed
                sock.sendall(huge)

        sender = threading.Thread(target=send)
        sender.start()
        status, headers, body = read_answer(sock)
        sender.join(15)
    used = cpu_seconds(p.proc.pid) - before
    assert (status, headers["content-type"]) == (431, "application/json")
    assert json.loads(body)["error"] == "the request head is larger than 65536 bytes"
    assert used < 1.0, f"poulpe spent {used:.2f} s of CPU on one header"
    assert httpx.get(f"{p.url}/health", timeout=5).status_code == 200


def test_a_head_that_does_not_arrive_in_time_closes_the_connection(
    served: Callable[..., ServedPoulpe], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_protocol, "HEAD_TIMEOUT", 1.0)  # the rule, in a second instead of the 5 s it gives
    p = served()
    address = ("127.0.0.1", p.port)
    with socket.create_connection(address, timeout=20) as silent, socket.create_connection(address, timeout=20) as slow:
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: poul")  # and nothing more
        started = time.monotonic()
        status, headers, _ = read_answer(slow)
        assert (status, headers["content-type"]) == (408, "application/json")
        assert silent.recv(1) == b""  # a connection that never spoke is simply closed
        assert time.monotonic() - started < 15


def test_1100_idle_connections_under_a_1024_file_limit_leave_health_answering(limited: Limited) -> None:
    assert limited.proc is not None
    assert f"Max open files            {FILE_LIMIT}" in Path(f"/proc/{limited.proc.pid}/limits").read_text()
    idle = []
    try:
        for _ in range(1100):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", limited.port))
            idle.append(sock)
        time.sleep(0.5)
        for _ in range(3):
            started = time.monotonic()
            answer = httpx.get(f"{limited.url}/health", timeout=5)
            assert answer.status_code == 200 and time.monotonic() - started < 1.0
    finally:
        for sock in idle:
            sock.close()
    log = limited.log()
    assert "out of system resource" not in log and len(log) < 10_000


def test_when_every_connection_is_busy_a_newcomer_gets_a_json_503(limited: Limited) -> None:
    with limited.client() as client:
        job = client.post("/task_in_queue", json={"method": "QUEUE", "name": "later", "delay": 3600}).json()["id"]
    polls = []
    try:
        refused = 0
        # more long-polls than a 1,024-file poulpe takes (its cap is 672 with 8 workers): each one is busy, none is
        # idle. Not far more: a 503 lingers to be read only while the open files above the cap last
        for _ in range(760):
            sock = socket.create_connection(("127.0.0.1", limited.port), timeout=10)
            with contextlib.suppress(OSError):
                sock.sendall(get(f"/task_resp/{job}?timeout=120"))
            polls.append(sock)
        for sock in polls:
            sock.setblocking(False)
        unanswered = list(polls)
        deadline = time.monotonic() + 15  # a loaded machine may take a while to answer 900 connections
        while not refused and time.monotonic() < deadline:
            time.sleep(0.1)
            for sock in list(unanswered):
                try:
                    if sock.recv(1024).startswith(b"HTTP/1.1 503"):
                        refused += 1
                    unanswered.remove(sock)
                except BlockingIOError:
                    pass  # still waiting for the job: a long-poll in progress
                except ConnectionResetError:
                    unanswered.remove(sock)  # far past the cap, where poulpe no longer lingers to be read
        assert refused > 0
        answer = httpx.get(f"{limited.url}/health", timeout=5)
        assert answer.status_code == 503 and "all busy" in answer.json()["error"]
    finally:
        for sock in polls:
            sock.close()
    time.sleep(0.5)
    assert httpx.get(f"{limited.url}/health", timeout=5).status_code == 200


TOKEN = "tok-Gw7pQ2zLx9"
GUESS = "guess-Vb3nM8kJ"


@pytest.mark.parametrize("style", ["text", "json"])
async def test_no_token_reaches_the_log_right_or_wrong(served: Callable[..., ServedPoulpe], style: str) -> None:
    flags = ["--token", TOKEN, "--log_level", "debug", "--access_log", *(["--log_json"] if style == "json" else [])]
    p = served(*flags)
    async with websockets.connect(f"ws://127.0.0.1:{p.port}/ws_task?token={TOKEN}") as ws:
        await ws.send("{}")
        await ws.recv()
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(f"ws://127.0.0.1:{p.port}/ws_task?token={GUESS}"):
            pass
    async with httpx.AsyncClient(base_url=p.url) as client:
        assert (await client.get("/jobs", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 200
        assert (await client.get("/jobs", headers={"Authorization": f"Bearer {GUESS}"})).status_code == 401
        assert (await client.get(f"/jobs?token={TOKEN}&page=1")).status_code == 401
        assert (await client.get(f"/jobs?size=5&access_token={GUESS}")).status_code == 401
    p.stop()
    log = p.log()
    assert "WebSocket /ws_task?token=***" in log and "/jobs?token=***&page=1" in log
    assert TOKEN not in log and GUESS not in log


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    proc = Limited(tmp_path / "raised", soft=512, hard=4096)
    try:
        proc.start()
        assert proc.proc is not None
        assert (
            "Max open files            4096                 4096" in Path(f"/proc/{proc.proc.pid}/limits").read_text()
        )
    finally:
        proc.stop()
