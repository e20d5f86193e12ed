"""What operators see of keys (SPEC 10.1): `poulpe keys` from a shell, and per-key gauges in /metrics, capped."""

from __future__ import annotations

import json

import pytest

from tests.e2e.helpers import accepted, result
from tests.e2e.test_keys import batch
from tests.e2e.test_ops_cli import run
from tests.serving import ServedPoulpe
from tests.started import Started
from tests.target import Target

TOKEN = "keys-s3cret"


@pytest.fixture(scope="module")
def proc(module_served: Started[ServedPoulpe]) -> ServedPoulpe:
    """poulpe served in the test process; `poulpe keys` runs as a subprocess, as an operator runs it."""
    return module_served("--workers", "2", token=TOKEN)


def test_poulpe_keys_sets_shows_pauses_and_lists_keys(proc: ServedPoulpe, fresh_target: Target) -> None:
    done = run(proc, "keys", "set", "shop/42", "--parallelism", "3", "--rate", "10", token=TOKEN)
    assert done.returncode == 0, done.stderr
    assert "parallelism  3" in done.stdout and "rate  10.0" in done.stdout
    assert run(proc, "keys", "pause", "shop/42", token=TOKEN).returncode == 0
    shown = json.loads(run(proc, "keys", "show", "shop/42", "--json", token=TOKEN).stdout)
    assert shown["paused"] is True and shown["parallelism"] == 3 and shown["key"] == "shop/42"
    with proc.client() as client:
        accepted(client, method="GET", name=fresh_target.url("/echo"), key="shop/42")
    listing = run(proc, "keys", token=TOKEN)
    assert listing.returncode == 0 and "shop/42  1 " in listing.stdout and "true" in listing.stdout
    assert run(proc, "keys", "set", "shop/42", "--parallelism", "none", token=TOKEN).returncode == 0
    assert json.loads(run(proc, "keys", "show", "shop/42", "--json", token=TOKEN).stdout)["parallelism"] is None
    bad = run(proc, "keys", "set", "shop/42", "--parallelism", "-2", token=TOKEN)
    assert bad.returncode != 0 and "parallelism" in bad.stderr
    assert "paused" in run(proc, "keys", "pause", token=TOKEN).stdout
    assert "running" in run(proc, "keys", "resume", token=TOKEN).stdout
    assert run(proc, "keys", "rm", "shop/42", token=TOKEN).returncode == 0


def test_metrics_show_the_busiest_keys_only(proc: ServedPoulpe, fresh_target: Target) -> None:
    with proc.client() as client:
        client.post("/pause")
        try:
            jobs = [{"method": "GET", "name": fresh_target.url("/echo"), "key": f"m{n:02d}"}
                    for n in range(30) for _ in range(n + 1)]  # fmt: skip
            ids = batch(client, jobs)
            text = client.get("/metrics").text
        finally:
            client.post("/resume")
        assert all(result(client, job_id)["status"] == "succeeded" for job_id in ids[-5:])
    waiting = [line for line in text.splitlines() if line.startswith("poulpe_key_waiting{")]
    assert len(waiting) == 20, "one series per key for the 20 busiest keys only"
    assert 'poulpe_key_waiting{key="m29"} 30.0' in waiting
    assert not any('key="m00"' in line for line in waiting)
    assert "poulpe_paused 1.0" in text
