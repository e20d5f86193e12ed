"""The token guards every route but /health, and no secret ever shows: not in the log (at debug level), not in
/sys_info, not in an error, not in `ps` when it came from the environment. poulpe listens on loopback by default."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from poulpe.openapi import document
from tests.e2e.helpers import result
from tests.poulpe_process import Poulpe, free_port
from tests.target import Target

TOKEN = "tok-Zq8vR2mXw4"
SIGNING_KEY = "sig-Kp4wT9yLn7"
PASSWORD = "pa55word-Hj3e"
SECRETS = (TOKEN, SIGNING_KEY, PASSWORD)
PROGRAMS = Path(__file__).parent.parent / "programs"
BAD_AUTH: dict[str, dict[str, str]] = {
    "none": {},
    "wrong-bearer": {"Authorization": "Bearer not-the-token"},
    "bearer-without-token": {"Authorization": "Bearer"},
    "token-plus-one": {"Authorization": f"Bearer {TOKEN}x"},
    "token-prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    "basic": {"Authorization": "Basic " + base64.b64encode(f"poulpe:{TOKEN}".encode()).decode()},
    "basic-token-alone": {"Authorization": f"Basic {TOKEN}"},
    "other-scheme": {"Authorization": f"Token {TOKEN}"},
    "bare-token": {"Authorization": TOKEN},
}


def routes() -> list[tuple[str, str]]:
    """Every (method, path) /openapi.json describes as needing the token, with `x` for the id. The open ones
    (`"security": []`: /health, the dashboard's page, script and style) hold no data."""
    return [
        (method.upper(), path.replace("{id}", "x"))
        for path, item in document()["paths"].items()
        for method, operation in item.items()
        if operation.get("security") != []
    ]


class Secured:
    """A poulpe with a token, a signing key and an exec_dir, run at debug level; every answer it gave is kept."""

    def __init__(self, proc: Poulpe, how: str) -> None:
        self.proc = proc
        self.how = how
        self.answers: list[httpx.Response] = []
        self.client = httpx.Client(base_url=proc.url, timeout=30)  # no default headers: each call says its own

    def call(self, method: str, path: str, *, token: bool = True, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        self.client.cookies.clear()  # one connection kept for speed, but nothing but the headers given is sent
        answer = self.client.request(method, path, headers=headers, **kwargs)
        self.answers.append(answer)
        return answer


@pytest.fixture(scope="module", params=["env", "flag"])
def secured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """The token given by POULPE_TOKEN, or by --token; the signing key always by POULPE_SIGNING_KEY."""
    home = tmp_path_factory.mktemp(f"secrets-{request.param}")
    folder = home / "bin"
    folder.mkdir()
    for name in ("showenv", "add"):
        (folder / name).write_bytes((PROGRAMS / name).read_bytes())
        (folder / name).chmod(0o755)
    env = {"POULPE_SIGNING_KEY": SIGNING_KEY}
    flags = ["--log_level", "debug", "--exec_dir", str(folder), "--workers", "2"]
    if request.param == "env":
        env["POULPE_TOKEN"] = TOKEN
    else:
        flags += ["--token", TOKEN]
    proc = Poulpe(home / "p", *flags, env=env, token=TOKEN).start()
    secured = Secured(proc, request.param)
    with secured.client:
        yield secured
    proc.stop()


@pytest.mark.parametrize("auth", BAD_AUTH.values(), ids=BAD_AUTH.keys())
def test_every_route_but_health_needs_the_token(secured: Secured, auth: dict[str, str]) -> None:
    for method, path in [*routes(), ("GET", "/nowhere"), ("GET", f"/sys_info?token={TOKEN}")]:
        answer = secured.call(method, path, token=False, headers=auth)
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.json() == {"result": "Fail", "error": "missing or wrong bearer token", "field": None}
        assert answer.headers["www-authenticate"] == "Bearer"


def test_the_right_token_opens_every_route(secured: Secured, target: Target) -> None:
    for method, path in routes():
        assert secured.call(method, path).status_code != 401, (method, path)
    assert secured.call("GET", "/sys_info").status_code == 200
    assert secured.call("GET", "/jobs").status_code == 200
    job = {"method": "GET", "name": target.url("/echo"), "wait": 20}
    answer = secured.call("POST", "/task_in_queue", json=job)
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded", answer.text
    # the auth scheme is case-insensitive (RFC 9110); the token is not
    assert secured.call("GET", "/jobs", token=False, headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_health_needs_no_token(secured: Secured) -> None:
    answer = secured.call("GET", "/health", token=False)
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    assert secured.call("GET", "/health", token=False, headers=BAD_AUTH["wrong-bearer"]).status_code == 200


def test_no_secret_shows_anywhere(secured: Secured, target: Target) -> None:
    """Jobs that fail with credentials in their URL, a program that prints its environment, a signed call; then
    the log, /sys_info, the jobs' errors and every answer poulpe gave in this module hold none of the secrets."""
    closed = f"http://user:{PASSWORD}@127.0.0.1:{free_port()}/echo"
    refusing = f"http://user:{PASSWORD}@127.0.0.1:{target.port}/status/503"
    redirected = target.url("/redirect", to=closed.replace("/echo", "/elsewhere"))  # Location holds credentials
    jobs = [
        {"id": f"cred-closed-{secured.how}", "method": "GET", "name": closed, "retry": {"max": 0}},
        {"id": f"cred-503-{secured.how}", "method": "POST", "name": refusing, "retry": {"max": 0}},
        {"id": f"cred-redirect-{secured.how}", "method": "GET", "name": redirected, "retry": {"max": 0}},
        {"id": f"signed-{secured.how}", "method": "POST", "name": target.url("/echo"), "params": {"a": 1}},
        {"id": f"env-{secured.how}", "method": "EXEC", "name": "showenv"},
    ]
    for job in jobs:
        assert secured.call("POST", "/task_in_queue", json=job).status_code == 202
    with secured.proc.client() as client:
        done = {job["id"]: result(client, job["id"]) for job in jobs}
    assert done[f"cred-closed-{secured.how}"]["status"] == "dead"
    assert done[f"cred-503-{secured.how}"]["status"] == "dead"
    assert done[f"cred-redirect-{secured.how}"]["status"] == "dead"
    signed = json.loads(done[f"signed-{secured.how}"]["result"]["body"])
    assert "t=" in signed["headers"]["Poulpe-Signature"]  # the key signs, and only its HMAC travels
    assert "POULPE_JOB_ID" in done[f"env-{secured.how}"]["result"]["stdout"]
    # a refused job whose URL carries credentials: the error names the field, not the password
    for bad in (f"http://user:{PASSWORD}@127.0.0.1:99999/", f"http://user:{PASSWORD}@[::1/x"):
        refused = secured.call("POST", "/task_in_queue", json={"method": "GET", "name": bad})
        assert refused.status_code == 400 and refused.json()["field"] == "name"
    secured.call("GET", "/jobs/nobody")
    secured.call("GET", "/task_resp/x?timeout=abc")
    secured.call("GET", "/jobs?status=bogus")

    for job in done.values():  # `name` is the user's own URL: what poulpe wrote about it must not repeat it
        written = json.dumps([job["error"], job["history"], job["result"]])
        assert not [s for s in SECRETS if s in written], job
    info = secured.call("GET", "/sys_info").text
    assert not [s for s in SECRETS if s in info], info
    for answer in secured.answers:
        if answer.status_code >= 400:
            assert not [s for s in SECRETS if s in answer.text], answer.text
    log = secured.proc.log()
    assert " DEBUG " in log, "the log is at debug level: every line is there"
    assert not [s for s in SECRETS if s in log], [line for line in log.splitlines() if any(s in line for s in SECRETS)]


def test_a_token_from_the_environment_is_not_in_the_command_line(secured: Secured) -> None:
    assert secured.proc.proc is not None
    cmdline = Path(f"/proc/{secured.proc.proc.pid}/cmdline")
    if not cmdline.exists():
        pytest.skip("no /proc on this system")
    args = cmdline.read_bytes().split(b"\0")
    if secured.how == "env":
        assert not [a for a in args if TOKEN.encode() in a or SIGNING_KEY.encode() in a], args
    else:  # a flag is in `ps` by nature: the docs tell to prefer POULPE_TOKEN
        assert TOKEN.encode() in args
        assert not [a for a in args if SIGNING_KEY.encode() in a], args


def _listening(port: int) -> list[str]:
    """The local addresses of the sockets listening on `port`, read from /proc/net/tcp and tcp6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


def _other_local_address() -> str | None:
    """An address of this machine that is not loopback, if it has one (no packet is sent to find it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the route
        except OSError:
            return None
        address: str = sock.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_poulpe_listens_on_loopback_only_by_default(tmp_path: Path) -> None:
    proc = Poulpe(tmp_path / "p").start()  # no --host
    try:
        assert "--host" not in proc.args()
        listening = _listening(proc.port)
        if listening:  # 127.0.0.1 is 0100007F in the kernel's little-endian hex
            assert listening == ["0100007F"], listening
        else:
            assert f"running on http://127.0.0.1:{proc.port}" in proc.log(), proc.log()
        other = _other_local_address()
        if other is not None:
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{other}:{proc.port}/health", timeout=5)
    finally:
        proc.stop()
