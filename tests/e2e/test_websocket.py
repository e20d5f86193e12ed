"""A client on /ws_task: acks in order, results pushed, bad frames answered without closing the socket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.e2e.raw_ws import RawWebSocket
from tests.poulpe_process import Poulpe
from tests.serving import ServedPoulpe
from tests.target import Target


async def frames(ws: ClientConnection, n: int) -> list[dict[str, Any]]:
    return [json.loads(await ws.recv(decode=True)) for _ in range(n)]


def ws_url(p: Poulpe | ServedPoulpe, query: str = "") -> str:
    return f"ws://127.0.0.1:{p.port}/ws_task{query}"


async def test_a_job_is_acked_then_its_result_is_pushed(served: Callable[..., ServedPoulpe], target: Target) -> None:
    p = served()
    async with websockets.connect(ws_url(p)) as ws:
        await ws.send(json.dumps({"id": "ws-1", "method": "GET", "name": target.url("/echo"), "params": "a=1"}))
        ack, result = await frames(ws, 2)
    assert ack == {"type": "ack", "id": "ws-1", "status": "queued"}
    assert result["type"] == "result" and result["id"] == "ws-1" and result["status"] == "succeeded"
    assert json.loads(result["result"]["body"])["query"] == {"a": "1"}


async def test_bad_frames_each_get_an_error_and_the_socket_stays_open(
    served: Callable[..., ServedPoulpe], target: Target
) -> None:
    p = served()
    bad = [
        "not json",
        "{",
        "[]",
        "42",
        "null",
        '"text"',
        "{}",
        '{"method": "GET"}',
        '{"name": "x"}',
        '{"method": "FETCH", "name": "http://x"}',
        '{"method": "GET", "name": "ftp://x"}',
        '{"method": "GET", "name": "http://x", "delay": -1}',
        '{"method": "GET", "name": "http://x", "cc": "99"}',
        '{"method": "GET", "name": "http://x", "extra": 1}',
        '{"method": "EXEC", "name": "add"}',
        '{"method": "GET", "name": "http://x", "id": "a b"}',
        "[" * 10000,
        '{"method": "GET", "name": "http://x", "delay": 1, "at": 2}',
        '{"method": "GET", "name": "http://x", "wait": -1}',
    ]
    async with websockets.connect(ws_url(p)) as ws:
        for frame in bad:
            await ws.send(frame)
        await ws.send(b"\x00binary")
        errors = await frames(ws, len(bad) + 1)
        assert [e["type"] for e in errors] == ["error"] * (len(bad) + 1)
        assert errors[7]["field"] == "name" and errors[12]["field"] == "cc"
        await ws.send(json.dumps({"id": "ws-after", "method": "GET", "name": target.url("/echo")}))
        ack, result = await frames(ws, 2)
    assert ack["id"] == "ws-after" and result["status"] == "succeeded"


async def test_a_batch_gets_one_ack_per_job_in_order(served: Callable[..., ServedPoulpe], target: Target) -> None:
    p = served()
    jobs = [{"id": f"b-{n}", "method": "GET", "name": target.url("/echo")} for n in range(5)]
    jobs.insert(2, {"id": "bad", "method": "GET"})
    async with websockets.connect(ws_url(p)) as ws:
        await ws.send(json.dumps(jobs))
        got = await frames(ws, 6 + 5)
    acks = [f for f in got if f["type"] != "result"]
    assert [a.get("id") for a in acks] == ["b-0", "b-1", None, "b-2", "b-3", "b-4"]
    assert acks[2]["type"] == "error" and acks[2]["field"] == "name"
    assert sorted(f["id"] for f in got if f["type"] == "result") == [f"b-{n}" for n in range(5)]


@pytest.mark.parametrize("query", ["", "?token=wrong"])
async def test_a_wrong_token_is_refused_at_connect(served: Callable[..., ServedPoulpe], query: str) -> None:
    p = served(env={"POULPE_TOKEN": "s3cret-token"}, token="s3cret-token")
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(ws_url(p, query)):
            pass
    async with websockets.connect(ws_url(p, "?token=s3cret-token")) as ws:
        await ws.send("{}")
        assert (await frames(ws, 1))[0]["type"] == "error"
    headers = {"Authorization": "Bearer s3cret-token"}
    async with websockets.connect(ws_url(p), additional_headers=headers) as ws:
        await ws.send("{}")
        assert (await frames(ws, 1))[0]["type"] == "error"


async def test_a_client_that_leaves_loses_nothing(served: Callable[..., ServedPoulpe], target: Target) -> None:
    p = served()
    async with websockets.connect(ws_url(p)) as ws:
        await ws.send(json.dumps({"id": "left", "method": "GET", "name": target.url("/slow?ms=300")}))
        assert (await frames(ws, 1))[0]["type"] == "ack"
    async with httpx.AsyncClient(base_url=p.url) as client:
        answer = await client.get("/task_resp/left", params={"timeout": 10})
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_client_that_stops_reading_cannot_grow_memory(poulpe: Callable[..., Poulpe], target: Target) -> None:
    """3,000 results of 64 KiB each (about 200 MB) finish for a client that reads nothing: poulpe stays flat.

    Every ack still arrives, in order; each result either arrives or is named in a "dropped" notice, and stays
    available at /task_resp. A first round over HTTP warms poulpe up, so that what is measured is the socket's cost.
    """
    p = poulpe("--workers", "16")
    assert p.proc is not None
    total, batch = 3000, 500
    url = target.url("/big", kb=64)
    async with p.async_client() as client:

        async def all_succeeded(count: int) -> None:
            deadline = time.monotonic() + 120
            while (await client.get("/sys_info")).json()["counts"]["succeeded"] < count:
                assert time.monotonic() < deadline, "the jobs did not finish"
                await asyncio.sleep(0.2)

        for start in range(0, total, batch):
            jobs = [{"id": f"warm-{n}", "method": "GET", "name": url} for n in range(start, start + batch)]
            assert (await client.post("/task_in_queue", json=jobs)).status_code == 202
        await all_succeeded(total)
        before = rss_mib(p.proc.pid)
        # connected after the warm-up: a client that reads nothing answers no keep-alive ping either
        with RawWebSocket(p.port) as ws:
            for start in range(0, total, batch):
                ws.send([{"id": f"big-{n}", "method": "GET", "name": url} for n in range(start, start + batch)])
            await all_succeeded(2 * total)
            grown = rss_mib(p.proc.pid) - before
            assert grown < 100, f"poulpe grew by {grown:.0f} MiB for a client that reads nothing"  # unbounded: ~200

            acks, results, dropped = [], set(), set()
            while len(results) + len(dropped) < total:
                frame = ws.recv()
                if frame["type"] == "ack":
                    acks.append(frame["id"])
                elif frame["type"] == "result":
                    results.add(frame["id"])
                else:
                    assert frame["type"] == "dropped" and not frame["truncated"]
                    assert frame["count"] == len(frame["ids"])
                    dropped.update(frame["ids"])
        assert acks == [f"big-{n}" for n in range(total)]
        assert results.isdisjoint(dropped) and len(dropped) > total // 2
        skipped = await client.get(f"/task_resp/{sorted(dropped)[0]}")
        assert skipped.status_code == 200 and skipped.json()["status"] == "succeeded"
