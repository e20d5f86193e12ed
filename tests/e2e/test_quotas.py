"""Quotas (SPEC 10.7): past a token's `max_pending` or `rate` a submission gets 429 with Retry-After, counted the
same by three processes sharing one Redis; and a tenant's flood does not starve another tenant."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_redis_shared import on_redis
from tests.poulpe_process import Poulpe
from tests.redis_server import RedisServer
from tests.serving import ServedPoulpe
from tests.started import Started
from tests.target import Target
from tests.tokens_file import bearer, write_tokens

LATER = {"method": "QUEUE", "name": "resize", "delay": 3600}
QUOTAS = {
    "pending": {"scopes": ["submit"], "tenant": "small", "max_pending": 5},
    "rated": {"scopes": ["submit"], "tenant": "rated", "rate": 10},
}


@contextlib.contextmanager
def clients(urls: list[str], token: str) -> Iterator[list[httpx.Client]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(httpx.Client(base_url=u, headers=bearer(token), timeout=30)) for u in urls]


def _max_pending_holds(urls: list[str], token: str) -> None:
    with clients(urls, token) as each:
        ids = []
        for n in range(5):
            answer = each[n % len(each)].post("/task_in_queue", json=LATER)
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        sixth = each[-1].post("/task_in_queue", json=LATER)
        assert sixth.status_code == 429 and int(sixth.headers["Retry-After"]) >= 1
        assert "5 unfinished jobs" in sixth.json()["error"]
        assert each[0].delete(f"/jobs/{ids[0]}").json()["status"] == "cancelled"  # one ends
        assert each[-1].post("/task_in_queue", json=LATER).status_code == 202  # the next is accepted
        assert each[0].post("/task_in_queue", json=LATER).status_code == 429


def _accepted_in(urls: list[str], token: str, seconds: float) -> tuple[int, int, float]:
    """Submissions from 6 threads spread over the processes for `seconds`: (accepted, refused with Retry-After,
    seconds from the first sent to the last answered)."""
    start = time.monotonic()
    end = start + seconds

    def flood(n: int) -> tuple[int, int]:
        ok = refused = 0
        with httpx.Client(base_url=urls[n % len(urls)], headers=bearer(token), timeout=30) as client:
            while time.monotonic() < end:
                answer = client.post("/task_in_queue", json=LATER)
                if answer.status_code == 202:
                    ok += 1
                else:
                    assert answer.status_code == 429 and answer.headers["Retry-After"], answer.text
                    refused += 1
        return ok, refused

    with ThreadPoolExecutor(6) as pool:
        counted = list(pool.map(flood, range(6)))
    return sum(c[0] for c in counted), sum(c[1] for c in counted), time.monotonic() - start


def _at_the_rate(ok: int, refused: int, elapsed: float) -> None:
    """10 a second, and the bucket's 10 at the start: 40 in 3 s (the bound stretches when a busy machine makes the
    flood last longer)."""
    assert 28 <= ok <= 10 + 10 * elapsed + 2 and refused > 0, (ok, refused, elapsed)


@pytest.fixture
def one(served: Callable[..., ServedPoulpe], tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    tokens = write_tokens(tmp_path / "tokens.toml", **QUOTAS)
    return [served("--tokens", str(tmp_path / "tokens.toml")).url], tokens


@pytest.fixture
def three(
    poulpe: Started[Poulpe], tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> tuple[list[str], dict[str, str]]:
    tokens = write_tokens(tmp_path / "tokens.toml", **QUOTAS)
    flags = on_redis(redis_server, redis_prefix, "--tokens", str(tmp_path / "tokens.toml"))
    return [p.url for p in poulpe.many(*flags, homes=["p0", "p1", "p2"])], tokens


def test_max_pending_holds_a_tenants_unfinished_jobs(one: tuple[list[str], dict[str, str]]) -> None:
    _max_pending_holds(one[0], one[1]["pending"])


def test_a_rate_refuses_a_burst_and_lets_the_rate_through(one: tuple[list[str], dict[str, str]]) -> None:
    urls, tokens = one
    start = time.monotonic()
    with clients(urls, tokens["rated"]) as (client,), ThreadPoolExecutor(10) as pool:
        burst = list(pool.map(lambda _: client.post("/task_in_queue", json=LATER).status_code, range(50)))
    took = time.monotonic() - start  # under 1 s on a quiet machine: the bucket's 10 and what refills meanwhile
    assert 10 <= burst.count(202) <= 10 + 10 * took + 1 and burst.count(429) == 50 - burst.count(202), (burst, took)
    assert burst.count(429) >= 25, (burst, took)
    time.sleep(1.2)  # the bucket fills again
    _at_the_rate(*_accepted_in(urls, tokens["rated"], 3.0))


def test_quotas_are_shared_by_three_processes_on_one_redis(three: tuple[list[str], dict[str, str]]) -> None:
    urls, tokens = three
    _max_pending_holds(urls, tokens["pending"])
    _at_the_rate(*_accepted_in(urls, tokens["rated"], 3.0))  # one bucket, not one per process


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_tenants_flood_does_not_starve_another(
    served: Callable[..., ServedPoulpe],
    tmp_path: Path,
    fresh_target: Target,
    store: str,
    redis_server: RedisServer,
    redis_prefix: str,
) -> None:
    tokens = write_tokens(
        tmp_path / "tokens.toml", a={"scopes": ["submit"], "tenant": "a"}, b={"scopes": ["submit"], "tenant": "b"}
    )
    shared = on_redis(redis_server, redis_prefix) if store == "redis" else ()
    proc = served("--tokens", str(tmp_path / "tokens.toml"), "--workers", "4", "--grace", "1", *shared)
    slow = {"method": "GET", "name": fresh_target.url("/slow", ms=50)}
    with clients([proc.url], tokens["a"]) as (a,), clients([proc.url], tokens["b"]) as (b,):
        for _ in range(5):
            assert a.post("/task_in_queue", json=[slow] * 1000).status_code == 202
        time.sleep(0.5)  # A's 5,000 jobs are due and the workers busy with them (some 60 s of work)
        ids = [b.post("/task_in_queue", json={"method": "GET", "name": fresh_target.url("/echo")}).json()["id"]
               for _ in range(5)]  # fmt: skip
        done = [b.get(f"/task_resp/{i}", params={"timeout": 10}).json() for i in ids]
        assert [job["status"] for job in done] == ["succeeded"] * 5, "B's jobs waited behind A's flood"
        waited = [job["started_at"] - job["created_at"] for job in done]
        assert max(waited) < 1.0, waited
        assert a.get("/sys_info").status_code == 403  # a submit token: not its to read
