"""POST /task_in_queue served as a plain ASGI app (poulpe/intake/http.py): the same answers as a Starlette route
built on Request and Response gave, head and body, for one job, a batch, a duplicate and the refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from starlette.routing import Route

from poulpe.app import create_app
from poulpe.auth import Guard
from poulpe.cli import settings_from
from poulpe.intake.http import TaskInQueue
from tests.serving import serving

JOB = {"method": "GET", "name": "http://127.0.0.1:9/never", "delay": 3600}


def flags(home: Path) -> list[str]:
    return ["--data", str(home / "poulpe.db"), "--dead", str(home / "dead")]


def test_the_intake_route_runs_without_a_request_object_per_job(tmp_path: Path) -> None:
    app = create_app(settings_from(flags(tmp_path)))
    [route] = [r for r in app.routes if isinstance(r, Route) and r.path == "/task_in_queue"]
    assert isinstance(route.app, Guard)
    assert isinstance(route.app.app, TaskInQueue)  # not Starlette's request_response wrapper


async def test_one_job_a_duplicate_and_a_batch_are_answered_with_the_json_head_and_body(tmp_path: Path) -> None:
    async with serving(settings_from(flags(tmp_path))) as client:
        one = await client.post("/task_in_queue", json={**JOB, "id": "route-one"})
        assert one.status_code == 202
        assert [(k, v) for k, v in one.headers.items() if k.startswith("content")] == [
            ("content-length", str(len(one.content))),
            ("content-type", "application/json"),
        ]
        body = msgspec.json.decode(one.content)
        assert one.content == msgspec.json.encode(
            {"result": "OK", "id": "route-one", "status": "scheduled", "run_at": body["run_at"]}
        )
        again = await client.post("/task_in_queue", json={**JOB, "id": "route-one"})
        assert again.status_code == 200 and again.json()["duplicate"] is True
        batch = await client.post("/task_in_queue", json=[JOB, {"method": "GET"}])
        assert batch.status_code == 207
        assert batch.headers["content-type"] == "application/json"
        assert batch.json()[1] == {"result": "Fail", "error": "name is required", "field": "name"}


async def test_a_body_in_chunks_is_read_whole_and_one_past_max_body_is_refused(tmp_path: Path) -> None:
    async with serving(settings_from([*flags(tmp_path), "--max_body", "2048"])) as client:
        encoded = msgspec.json.encode({**JOB, "id": "route-chunks"})

        async def chunks(data: bytes) -> AsyncIterator[bytes]:
            for start in range(0, len(data), 16):
                yield data[start : start + 16]

        headers = {"content-type": "application/json"}
        whole = await client.post("/task_in_queue", content=chunks(encoded), headers=headers)
        assert whole.status_code == 202 and whole.json()["id"] == "route-chunks"
        big = msgspec.json.encode({**JOB, "meta": {"pad": "x" * 4096}})
        refused = await client.post("/task_in_queue", content=chunks(big), headers=headers)
        assert refused.status_code == 413
        assert refused.json()["error"] == "the body is larger than 2048 bytes (--max_body)"
        plain = await client.post("/task_in_queue", content=encoded, headers={"content-type": "text/plain"})
        assert plain.status_code == 415
