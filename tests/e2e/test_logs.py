"""What poulpe writes to its log: one line per attempt at info, every transition at debug, JSON on request."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.serving import ServedPoulpe
from tests.target import Target


def run_one(p: ServedPoulpe, target: Target, job_id: str) -> None:
    with p.client() as client:
        answer = client.post(
            "/task_in_queue", json={"id": job_id, "method": "GET", "name": target.url("/echo"), "wait": 10}
        )
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded"


def test_json_lines_carry_each_transition_with_id_attempt_and_elapsed(
    served: Callable[..., ServedPoulpe], target: Target
) -> None:
    p = served("--log_json", "--log_level", "debug")
    run_one(p, target, "logged-1")
    p.stop()
    lines = [json.loads(line) for line in p.log().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    mine = [line["message"] for line in lines if "logged-1" in line["message"]]
    assert [m.split()[2] for m in mine] == ["queued", "running", "succeeded"]
    assert "attempt=1" in mine[-1] and "elapsed_ms=" in mine[-1]


def test_at_info_one_line_ends_each_attempt(served: Callable[..., ServedPoulpe], target: Target) -> None:
    p = served()
    run_one(p, target, "logged-2")
    p.stop()
    mine = [line for line in p.log().splitlines() if "logged-2" in line]
    assert len(mine) == 1 and "succeeded attempt=1" in mine[0]
