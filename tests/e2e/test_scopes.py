"""Every route has a scope (SPEC 10.7), tried route by route: no token gets 401, a token without the route's
scope 403, one with it gets through; the table, the app and /openapi.json name the same routes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from starlette.routing import Route

from poulpe.app import create_app
from poulpe.auth import guard
from poulpe.openapi import document
from poulpe.scopes import ROUTES, SCOPES, allowed, rule_of
from poulpe.settings import Settings
from poulpe.token_file import Tokens
from poulpe.tokens import digest_of
from tests.serving import ServedPoulpe
from tests.tokens_file import bearer, write_tokens

Start = Callable[..., ServedPoulpe]
FILLED = {"{id}": "no-such-job", "{key}": "no-such-key", "{type}": "resize", "{date}": "2026-01-01"}


def _filled(path: str) -> str:
    for hole, value in FILLED.items():
        path = path.replace(hole, value)
    return path


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("tokens") / "tokens.toml"
    return path, write_tokens(
        path,
        submitter={"scopes": ["submit"]},
        reader={"scopes": ["read"]},
        admin={"scopes": ["admin"]},
        tenant_admin={"scopes": ["admin"], "tenant": "pay"},
    )


@pytest.fixture(scope="module")
def proc(module_served: Start, tokens: tuple[Path, dict[str, str]]) -> Iterator[ServedPoulpe]:
    yield module_served("--tokens", str(tokens[0]), "--workers", "2")


def _refused(answer: httpx.Response) -> bool:
    """poulpe's own 403 (kingtask's routes answer 403 to bad input as kingtask did: not a refusal of the token)."""
    return answer.status_code == 403 and ("token's scopes" in answer.text or "whole deployment" in answer.text)


HTTP_ROUTES = sorted(key for key in ROUTES if key[0] != "WS")


@pytest.mark.parametrize(("method", "path"), HTTP_ROUTES, ids=[f"{m} {p}" for m, p in HTTP_ROUTES])
def test_each_route_asks_for_its_scope(
    proc: ServedPoulpe, tokens: tuple[Path, dict[str, str]], method: str, path: str
) -> None:
    rule = rule_of(method, path)
    body = {"json": {}} if method in ("POST", "PUT") else {}
    with httpx.Client(base_url=proc.url, timeout=30) as client:
        anonymous = client.request(method, _filled(path), **body)
        assert (anonymous.status_code == 401) == (rule.need != "public"), anonymous.text
        for name, token in tokens[1].items():
            scopes = {"submitter": {"submit"}, "reader": {"read"}}.get(name, {"admin"})
            answer = client.request(method, _filled(path), headers=bearer(token), **body)
            may = allowed(frozenset(scopes), rule) and not (rule.whole and name == "tenant_admin")
            assert answer.status_code != 401, answer.text
            assert _refused(answer) != may, f"{name}: {answer.status_code} {answer.text}"
            assert answer.status_code < 500, answer.text
            if method == "POST" and path == "/pause" and may:
                client.post("/resume", headers=bearer(token))


async def test_the_websocket_asks_for_submit(proc: ServedPoulpe, tokens: tuple[Path, dict[str, str]]) -> None:
    url = proc.url.replace("http", "ws") + "/ws_task"
    for name in ("reader",):
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(url, additional_headers=bearer(tokens[1][name])):
                pass
        assert refused.value.response.status_code == 403
    async with websockets.connect(url, additional_headers=bearer(tokens[1]["submitter"])) as ws:
        await ws.send(json.dumps({"method": "QUEUE", "name": "resize", "delay": 3600}))
        assert json.loads(await ws.recv())["type"] == "ack"


def test_a_submit_token_submits_and_reads_its_results_and_nothing_else(
    proc: ServedPoulpe, tokens: tuple[Path, dict[str, str]]
) -> None:
    """The issue's story: a `submit` token gets 403 on keys, dead letters, actions, cron and pause."""
    with httpx.Client(base_url=proc.url, headers=bearer(tokens[1]["submitter"]), timeout=30) as client:
        sent = client.post("/task_in_queue", json={"method": "QUEUE", "name": "resize", "delay": 3600})
        assert sent.status_code == 202
        job_id = sent.json()["id"]
        assert client.get(f"/jobs/{job_id}").json()["status"] == "scheduled"
        assert client.get(f"/task_resp/{job_id}", params={"timeout": 0}).status_code == 202
        for method, path in [
            ("GET", "/keys"),
            ("PUT", "/keys/k"),
            ("GET", "/dead"),
            (" POST", f"/dead/{job_id}/retry"),
            ("POST", f"/jobs/{job_id}/run"),
            ("GET", "/cron"),
            ("POST", "/pause"),
            ("GET", "/metrics"),
        ]:
            assert client.request(method.strip(), path, json={}).status_code == 403, path


def test_every_route_of_the_app_and_of_the_document_has_a_scope() -> None:
    app = create_app(Settings())
    served = set()
    for route in app.routes:
        assert isinstance(route, Route) or route.path == "/ws_task"
        methods = sorted((getattr(route, "methods", None) or {"WS"}) - {"HEAD"})
        served |= {(m, route.path) for m in methods}
    assert served == set(ROUTES), "poulpe/scopes.py names every route poulpe serves, and only those"
    described = document()
    for path, operations in described["paths"].items():
        for method, operation in operations.items():
            rule = rule_of(method, path)
            assert operation["x-poulpe-scope"] == rule.need
            if rule.need == "public":
                assert operation["security"] == []
            else:
                opened = [scope for requirement in operation["security"] for scope in requirement["bearer"]]
                assert opened == [s for s in SCOPES if allowed(frozenset({s}), rule)] and opened
                assert "403" in operation["responses"]


def test_a_route_nobody_gave_a_scope_stops_poulpe_from_starting() -> None:
    async def endpoint(_: object) -> None: ...

    with pytest.raises(RuntimeError, match="GET /forgotten has no scope"):
        guard([Route("/forgotten", endpoint, methods=["GET"])], Tokens(None, "t"))


def test_no_token_or_digest_shows_anywhere(proc: ServedPoulpe, tokens: tuple[Path, dict[str, str]]) -> None:
    secrets = [*tokens[1].values(), *(digest_of(t) for t in tokens[1].values())]
    with httpx.Client(base_url=proc.url, headers=bearer(tokens[1]["admin"]), timeout=30) as client:
        shown = [client.get(path).text for path in ("/sys_info", "/openapi.json", "/jobs", "/metrics", "/health")]
        shown.append(client.get("/jobs", headers=bearer(tokens[1]["admin"] + "x")).text)  # a wrong one: 401
        shown.append(client.get("/dead", headers=bearer(tokens[1]["submitter"])).text)  # no scope: 403
    shown.append(proc.log())
    assert not any(secret in text for secret in secrets for text in shown)
