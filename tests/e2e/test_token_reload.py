"""The tokens file is reloaded without a restart (SPEC 10.7): a token added works after SIGHUP, a removed one gets
401 at once, also on an open WebSocket's next message; a bad file is refused and the tokens in force stay. poulpe
runs as a subprocess where the signal is the point."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import websockets

from poulpe.tokens import digest_of
from tests.e2e.helpers import eventually
from tests.poulpe_process import Poulpe
from tests.serving import ServedPoulpe
from tests.tokens_file import bearer, write_tokens

LATER = {"method": "QUEUE", "name": "resize", "delay": 3600}


def _status(url: str, token: str) -> int:
    return httpx.post(f"{url}/task_in_queue", json=LATER, headers=bearer(token), timeout=10).status_code


async def test_tokens_come_and_go_on_sighup(poulpe: Callable[..., Poulpe], tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    first = write_tokens(path, old={"scopes": ["submit"]})
    proc = poulpe("--tokens", str(path))
    assert _status(proc.url, first["old"]) == 202
    newer = write_tokens(tmp_path / "newer.toml", new={"scopes": ["submit"]})
    assert _status(proc.url, newer["new"]) == 401
    ws_url = proc.url.replace("http", "ws") + "/ws_task"
    async with websockets.connect(ws_url, additional_headers=bearer(first["old"])) as ws:
        await ws.send(json.dumps(LATER))
        assert json.loads(await ws.recv())["type"] == "ack"
        # the file now holds only the new token: the old one is removed, the new one added
        path.write_text((tmp_path / "newer.toml").read_text())
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        eventually(lambda: _status(proc.url, newer["new"]) == 202, timeout=5)
        assert _status(proc.url, first["old"]) == 401
        await ws.send(json.dumps(LATER))  # the open socket's next message
        refused = json.loads(await ws.recv())
        assert refused["type"] == "error" and refused["status"] == 401
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    # a bad file is refused: the tokens in force stay, and the log names the entry, never its digest
    path.write_text(path.read_text().replace('scopes = ["submit"]', 'scopes = ["root"]'))
    proc.proc.send_signal(signal.SIGHUP)
    eventually(lambda: "new file refused" in proc.log(), timeout=5)
    assert _status(proc.url, newer["new"]) == 202
    assert digest_of(newer["new"]) not in proc.log() and newer["new"] not in proc.log()
    assert first["old"] not in proc.log()


def test_a_bad_tokens_file_stops_poulpe_from_starting(poulpe: Callable[..., Poulpe], tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    write_tokens(path, ci={"scopes": ["submit"]})
    path.write_text(path.read_text().replace('"submit"', '"everything"'))
    proc = Poulpe(tmp_path / "p", "--tokens", str(path))
    with pytest.raises(RuntimeError, match=r"entry 1 \(ci\): scopes must be"):
        proc.start()


def test_a_changed_file_is_read_again_without_a_signal(served: Callable[..., ServedPoulpe], tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    first = write_tokens(path, old={"scopes": ["submit"]})
    proc = served("--tokens", str(path))
    later = write_tokens(tmp_path / "later.toml", new={"scopes": ["submit"]})
    assert _status(proc.url, later["new"]) == 401
    path.write_text((tmp_path / "later.toml").read_text())  # as an editor saves it
    eventually(lambda: _status(proc.url, later["new"]) == 202, timeout=10)
    assert _status(proc.url, first["old"]) == 401
