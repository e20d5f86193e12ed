"""POST /task_in_queue answered through one ASGI layer (poulpe/intake/hot.py): for every kind of request, the answer
(status, head, body), the error count in /metrics and the logs are the same as through Starlette's whole stack."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from poulpe.app import create_app
from poulpe.cli import settings_from
from poulpe.intake.hot import HotRoute, PoulpeApp
from tests.serving import serving_app
from tests.tokens_file import bearer, write_tokens

JOB = {"method": "GET", "name": "http://127.0.0.1:9/never", "delay": 3600}
Answer = tuple[int, list[tuple[str, str]], Any]


def errors_counted(hot: HotRoute) -> dict[str, float]:
    """poulpe_intake_errors_total by status, as /metrics shows it."""
    counts = {}
    for family in hot.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "poulpe_intake_errors_total":
                counts[sample.labels["status"]] = sample.value
    return counts


def same_shape(answer: httpx.Response) -> Answer:
    """The answer with what differs from one job to the next (its id, its times) blanked."""
    body: Any = msgspec.json.decode(answer.content) if answer.content else None
    for item in body if isinstance(body, list) else [body]:
        if isinstance(item, dict):
            for volatile in ("id", "run_at", "created_at"):
                if volatile in item:
                    item[volatile] = "…"
    headers = [(k, v) for k, v in answer.headers.items() if k != "content-length" and k != "date"]
    return answer.status_code, headers, body


async def both_ways(
    app: PoulpeApp, client: httpx.AsyncClient, request: Callable[[], Any]
) -> tuple[Answer, dict[str, float]]:
    """The request through the one layer, then through the whole stack: the answers and the error counts match."""
    hot = app.hot
    assert isinstance(hot, HotRoute)
    answers, counts = [], []
    for layer in (hot, None):
        app.hot = layer
        before = errors_counted(hot)
        answers.append(same_shape(await request()))
        counts.append({k: v - before.get(k, 0) for k, v in errors_counted(hot).items() if v != before.get(k, 0)})
    app.hot = hot
    assert answers[0] == answers[1]
    assert counts[0] == counts[1]
    return answers[0], counts[0]


def test_the_app_answers_the_intake_route_through_one_layer(tmp_path: Path) -> None:
    app = create_app(settings_from(["--data", str(tmp_path / "poulpe.db"), "--dead", str(tmp_path / "dead")]))
    assert isinstance(app, PoulpeApp)
    assert isinstance(app.hot, HotRoute) and app.hot.route.path == "/task_in_queue"


async def test_jobs_batches_and_refusals_get_the_same_answers_as_through_the_whole_stack(tmp_path: Path) -> None:
    flags = ["--data", str(tmp_path / "poulpe.db"), "--dead", str(tmp_path / "dead"), "--max_body", "4096"]
    app = create_app(settings_from(flags))
    assert isinstance(app, PoulpeApp)
    async with serving_app(app) as client:

        def post(body: Any = None, **kwargs: Any) -> Callable[[], Any]:
            return lambda: client.post("/task_in_queue", json=body, **kwargs)

        assert (await both_ways(app, client, post(JOB)))[0][0] == 202
        await client.post("/task_in_queue", json={**JOB, "id": "hot-known"})
        status, _, body = (await both_ways(app, client, post({**JOB, "id": "hot-known"})))[0]
        assert status == 200 and body["duplicate"] is True
        assert (await both_ways(app, client, post([JOB, {"method": "GET"}])))[0][0] == 207
        answer, counted = await both_ways(app, client, post({"method": "GET"}))
        assert answer[0] == 400 and counted == {"400": 1}
        answer, counted = await both_ways(app, client, post(content=b"{", headers={"content-type": "application/json"}))
        assert answer[0] == 400 and counted == {"400": 1}
        answer, counted = await both_ways(app, client, post(content=b"{}", headers={"content-type": "text/plain"}))
        assert answer[0] == 415 and counted == {"415": 1}
        answer, counted = await both_ways(app, client, post({**JOB, "meta": {"pad": "x" * 5000}}))
        assert answer[0] == 413 and counted == {"413": 1}
        # not the hot path's: another method, the same answers as ever
        answer, counted = await both_ways(app, client, lambda: client.get("/task_in_queue"))
        assert answer[0] == 405 and counted == {"405": 1}


async def test_tokens_and_scopes_are_checked_the_same(tmp_path: Path) -> None:
    tokens = write_tokens(
        tmp_path / "tokens.toml", submitter={"scopes": ["submit"]}, reader={"scopes": ["read"]}
    )  # fmt: skip
    flags = [
        "--data",
        str(tmp_path / "poulpe.db"),
        "--dead",
        str(tmp_path / "dead"),
        "--tokens",
        str(tmp_path / "tokens.toml"),
    ]
    app = create_app(settings_from(flags))
    assert isinstance(app, PoulpeApp)
    async with serving_app(app) as client:
        answer, counted = await both_ways(app, client, lambda: client.post("/task_in_queue", json=JOB))
        assert answer[0] == 401 and ("www-authenticate", "Bearer") in answer[1] and counted == {"401": 1}
        wrong = bearer("not-a-token")
        answer, counted = await both_ways(app, client, lambda: client.post("/task_in_queue", json=JOB, headers=wrong))
        assert answer[0] == 401 and counted == {"401": 1}
        reader = bearer(tokens["reader"])
        answer, counted = await both_ways(app, client, lambda: client.post("/task_in_queue", json=JOB, headers=reader))
        assert answer[0] == 403 and counted == {"403": 1}
        submitter = bearer(tokens["submitter"])
        answer, _ = await both_ways(app, client, lambda: client.post("/task_in_queue", json=JOB, headers=submitter))
        assert answer[0] == 202


async def test_an_unexpected_error_is_a_logged_500_not_counted_as_the_stack_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings_from(["--data", str(tmp_path / "poulpe.db"), "--dead", str(tmp_path / "dead")]))
    assert isinstance(app, PoulpeApp)
    async with serving_app(app) as client:
        manager = app.state.service.manager

        async def broken(jobs: Any) -> Any:
            raise ZeroDivisionError("a bug")

        manager.submit = broken
        with caplog.at_level(logging.ERROR):
            answer, counted = await both_ways(app, client, lambda: client.post("/task_in_queue", json=JOB))
    assert answer[0] == 500 and answer[2] == {"result": "Fail", "error": "internal error", "field": None}
    assert counted == {}  # ServerErrorMiddleware answers from outside the error counter, as before
    logged = [r for r in caplog.records if r.getMessage() == "unexpected error on POST /task_in_queue"]
    assert len(logged) == 2  # once each way
