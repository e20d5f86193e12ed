"""Retries and dead letters: failed attempts are retried by policy; a job out of attempts lands in the dead letters,
where the user can read it, retry it or delete it."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import accepted, dead_letter_path, result, state
from tests.serving import ServedPoulpe
from tests.target import Target


@pytest.fixture(scope="module")
def proc(module_served: Callable[..., ServedPoulpe]) -> ServedPoulpe:
    """The flags give the default policy: one retry after 0.2 s."""
    return module_served("--workers", "4", "--max_retry", "1", "--retry_interval", "0.2")


def gaps(job: dict[str, Any]) -> list[float]:
    """Seconds between the end of each attempt and the start of the next."""
    history = job["history"]
    return [b["started_at"] - a["finished_at"] for a, b in itertools.pairwise(history)]


def test_a_flaky_target_succeeds_on_the_third_attempt(client: httpx.Client, fresh_target: Target) -> None:
    url = fresh_target.url("/flaky/third-time", fail=2)
    accepted(client, id="flaky-3", method="GET", name=url, retry={"max": 3, "interval": 0.2})

    done = result(client, "flaky-3")
    assert done["status"] == "succeeded"
    assert done["attempts"] == 3
    assert done["error"] is None
    assert done["result"]["status_code"] == 200
    history = done["history"]
    assert [a["n"] for a in history] == [1, 2, 3]
    assert [a["ok"] for a in history] == [False, False, True]
    assert all("500" in a["error"] for a in history[:2])
    assert all(gap >= 0.19 for gap in gaps(done)), gaps(done)
    assert [call.attempt for call in fresh_target.calls_for("flaky-3")] == [1, 2, 3]


def test_an_always_failing_job_dies_and_leaves_a_dead_letter(
    client: httpx.Client, proc: ServedPoulpe, fresh_target: Target
) -> None:
    url = fresh_target.url("/status/500")
    accepted(client, id="doomed", method="POST", name=url, params={"k": "v"}, retry={"max": 2, "interval": 0.1})

    done = result(client, "doomed")
    assert done["status"] == "dead"
    assert done["attempts"] == 3
    assert done["result"]["status_code"] == 500
    assert "500" in done["error"]
    assert len(fresh_target.calls_for("doomed")) == 3

    letter = dead_letter_path(proc.home / "dead", done)
    assert letter.is_file()
    record = json.loads(letter.read_text())
    assert record["id"] == "doomed"
    assert record["method"] == "POST" and record["name"] == url and record["params"] == {"k": "v"}
    assert record["retry"]["max"] == 2
    assert record["status"] == "dead"
    assert [(a["n"], a["ok"]) for a in record["history"]] == [(1, False), (2, False), (3, False)]
    assert all("500" in a["error"] for a in record["history"])
    assert record["result"]["status_code"] == 500

    listing = client.get("/dead", params={"size": 1000}).json()
    assert "doomed" in [item["id"] for item in listing["dead"]]
    assert listing["total"] >= 1
    shown = client.get("/dead/doomed")
    assert shown.status_code == 200
    assert shown.json()["status"] == "dead"
    assert len(shown.json()["history"]) == 3
    assert shown.json()["job"]["params"] == {"k": "v"}
    # the job itself stays readable as dead
    assert client.get("/jobs/doomed").json()["status"] == "dead"


def test_retry_from_the_dead_letters_runs_the_job_again(
    client: httpx.Client, proc: ServedPoulpe, fresh_target: Target
) -> None:
    url = fresh_target.url("/flaky/revived", fail=3)
    accepted(client, id="revived", method="GET", name=url, retry={"max": 2, "interval": 0.1})
    dead = result(client, "revived")
    assert dead["status"] == "dead" and dead["attempts"] == 3
    letter = dead_letter_path(proc.home / "dead", dead)
    assert letter.is_file()

    answer = client.post("/dead/revived/retry")
    assert answer.status_code == 202, answer.text
    assert answer.json()["id"] == "revived"

    done = result(client, "revived")
    assert done["status"] == "succeeded"
    assert done["attempts"] == 4
    assert [a["ok"] for a in done["history"]] == [False, False, False, True]
    assert [call.attempt for call in fresh_target.calls_for("revived")] == [1, 2, 3, 4]
    assert not letter.exists()
    assert client.get("/dead/revived").status_code == 404
    assert "revived" not in [item["id"] for item in client.get("/dead", params={"size": 1000}).json()["dead"]]
    assert client.post("/dead/revived/retry").status_code == 404


def test_delete_a_dead_letter(client: httpx.Client, proc: ServedPoulpe, fresh_target: Target) -> None:
    accepted(client, id="forget-me", method="GET", name=fresh_target.url("/status/404"), retry={"max": 0})
    dead = result(client, "forget-me")
    assert dead["status"] == "dead" and dead["attempts"] == 1
    letter = dead_letter_path(proc.home / "dead", dead)
    assert letter.is_file()

    answer = client.delete("/dead/forget-me")
    assert answer.status_code == 200
    assert not letter.exists()
    assert client.get("/dead/forget-me").status_code == 404
    assert client.delete("/dead/forget-me").status_code == 404
    assert len(fresh_target.calls_for("forget-me")) == 1


def test_the_flags_give_the_default_policy(client: httpx.Client, fresh_target: Target) -> None:
    accepted(client, id="by-flags", method="GET", name=fresh_target.url("/status/502"))

    done = result(client, "by-flags")
    assert done["status"] == "dead"
    assert done["attempts"] == 2  # --max_retry 1
    assert gaps(done)[0] >= 0.19  # --retry_interval 0.2


def test_exponential_backoff_doubles_the_interval(client: httpx.Client, fresh_target: Target) -> None:
    retry = {"max": 3, "interval": 0.2, "backoff": "exponential"}
    accepted(client, id="expo", method="GET", name=fresh_target.url("/status/500"), retry=retry)

    done = result(client, "expo")
    assert done["status"] == "dead"
    assert done["attempts"] == 4
    # equal jitter: between half the doubled interval and all of it (plus some slack for a busy machine)
    for gap, ceiling in zip(gaps(done), (0.2, 0.4, 0.8), strict=True):
        assert ceiling / 2 - 0.01 <= gap <= ceiling + 1.0, gaps(done)


def test_exponential_backoff_stops_at_max_interval(client: httpx.Client, fresh_target: Target) -> None:
    retry = {"max": 3, "interval": 0.2, "backoff": "exponential", "max_interval": 0.3}
    accepted(client, id="capped", method="GET", name=fresh_target.url("/status/500"), retry=retry)

    done = result(client, "capped")
    assert done["attempts"] == 4
    assert all(gap <= 0.3 + 1.0 for gap in gaps(done)), gaps(done)
    assert gaps(done)[2] >= 0.15 - 0.01


def test_intervals_give_one_retry_after_each(client: httpx.Client, fresh_target: Target) -> None:
    accepted(client, id="kingtask", method="GET", name=fresh_target.url("/status/500"), retry={"intervals": [0.1, 0.5]})

    done = result(client, "kingtask")
    assert done["status"] == "dead"
    assert done["attempts"] == 3
    first, second = gaps(done)
    assert 0.09 <= first <= 1.1
    assert 0.49 <= second <= 1.5


def test_retry_after_on_429_sets_the_next_attempts_delay(client: httpx.Client, fresh_target: Target) -> None:
    url = fresh_target.url("/status/429", retry_after=1)
    accepted(client, id="throttled", method="GET", name=url, retry={"max": 1, "interval": 0.05})

    done = result(client, "throttled")
    assert done["status"] == "dead"
    assert done["attempts"] == 2
    assert done["result"]["status_code"] == 429
    [gap] = gaps(done)
    assert 0.95 <= gap <= 2.5, gap
    first, second = fresh_target.calls_for("throttled")
    assert second.at - first.at >= 0.95


def test_retry_after_on_503_is_bounded_by_max_interval(client: httpx.Client, fresh_target: Target) -> None:
    url = fresh_target.url("/status/503", retry_after=3600)
    accepted(client, id="bounded", method="GET", name=url, retry={"max": 1, "interval": 0.05, "max_interval": 0.5})

    done = result(client, "bounded")
    assert done["attempts"] == 2
    [gap] = gaps(done)
    assert 0.49 <= gap <= 2.0, gap


def test_a_retrying_job_shows_its_state_between_attempts(client: httpx.Client, fresh_target: Target) -> None:
    url = fresh_target.url("/flaky/between", fail=1)
    accepted(client, id="between", method="GET", name=url, retry={"max": 1, "interval": 2})

    answer = client.get("/task_resp/between", params={"timeout": 1})
    assert answer.status_code == 202
    state = answer.json()
    assert state["status"] == "retrying"
    assert state["attempts"] == 1
    assert "500" in state["error"]
    assert state["run_at"] > state["history"][0]["finished_at"]
    assert result(client, "between")["status"] == "succeeded"


def test_a_job_shown_dead_already_has_its_dead_letter(client: httpx.Client, fresh_target: Target) -> None:
    """A user who polls until "dead" and then opens the dead letter finds it (it is written before the job is
    shown dead, so a retry from the dead letters can follow at once)."""
    for n in range(20):
        job_id = f"polled-{n}"
        accepted(client, id=job_id, method="GET", name=fresh_target.url("/status/500"), retry={"max": 0})
        deadline = time.monotonic() + 15
        while state(client, job_id)["status"] != "dead":  # poll as fast as a user's script would
            assert time.monotonic() < deadline, f"{job_id} is not dead after 15 s"
        assert client.get(f"/dead/{job_id}").status_code == 200, f"{job_id} is dead but has no dead letter yet"
