"""When jobs run: `delay`, `at` (unix seconds or ISO-8601), a time in the past, and due order."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.helpers import accepted, result, submit
from tests.serving import ServedPoulpe
from tests.target import Target

SOON_AFTER = 1.5  # generous: the spec promises milliseconds when a worker is free


@pytest.fixture(scope="module")
def proc(module_served: Callable[..., ServedPoulpe]) -> ServedPoulpe:
    """One poulpe for the module: each test waits for its own jobs, which have ids of their own."""
    return module_served("--workers", "2")


def test_a_delayed_job_waits_for_its_time_then_runs_soon(client: httpx.Client, fresh_target: Target) -> None:
    before = time.time()
    ack = accepted(client, id="delayed", method="GET", name=fresh_target.url("/echo"), delay=1.5)
    after = time.time()

    assert ack["status"] == "scheduled"
    assert before + 1.5 <= ack["run_at"] + 0.01 and ack["run_at"] <= after + 1.5 + 0.01
    assert client.get("/jobs/delayed").json()["status"] == "scheduled"
    assert fresh_target.calls_for("delayed") == []

    done = result(client, "delayed")
    assert done["status"] == "succeeded"
    [call] = fresh_target.calls_for("delayed")
    assert call.at >= ack["run_at"] - 0.01, "the job started before its time"
    assert call.at - ack["run_at"] < SOON_AFTER
    assert ack["run_at"] - 0.01 <= done["started_at"] < ack["run_at"] + SOON_AFTER


def test_at_as_unix_seconds(client: httpx.Client, fresh_target: Target) -> None:
    at = round(time.time() + 1.2, 3)
    ack = accepted(client, id="at-unix", method="GET", name=fresh_target.url("/echo"), at=at)

    assert ack["status"] == "scheduled"
    assert ack["run_at"] == pytest.approx(at, abs=0.001)
    result(client, "at-unix")
    [call] = fresh_target.calls_for("at-unix")
    assert at - 0.01 <= call.at < at + SOON_AFTER


def test_at_as_iso_8601_with_an_offset(client: httpx.Client, fresh_target: Target) -> None:
    paris_summer = dt.timezone(dt.timedelta(hours=2))
    when = dt.datetime.now(paris_summer).replace(microsecond=0) + dt.timedelta(seconds=2)
    ack = accepted(client, id="at-iso", method="GET", name=fresh_target.url("/echo"), at=when.isoformat())

    assert "+02:00" in when.isoformat()
    assert ack["status"] == "scheduled"
    assert ack["run_at"] == pytest.approx(when.timestamp(), abs=0.001)
    result(client, "at-iso")
    [call] = fresh_target.calls_for("at-iso")
    assert when.timestamp() - 0.01 <= call.at < when.timestamp() + SOON_AFTER


def test_at_in_utc_with_z(client: httpx.Client, fresh_target: Target) -> None:
    when = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
    text = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    ack = accepted(client, id="at-z", method="GET", name=fresh_target.url("/echo"), at=text)

    assert ack["run_at"] == pytest.approx(when.timestamp(), abs=0.001)
    assert result(client, "at-z")["status"] == "succeeded"


def test_at_in_the_past_runs_now(client: httpx.Client, fresh_target: Target) -> None:
    before = time.time()
    ack = accepted(client, id="past", method="GET", name=fresh_target.url("/echo"), at=before - 3600)

    assert ack["status"] == "queued"
    assert ack["run_at"] >= before - 0.01
    done = result(client, "past", timeout=10)
    assert done["status"] == "succeeded"
    [call] = fresh_target.calls_for("past")
    assert call.at - before < SOON_AFTER


def test_at_without_offset_or_with_delay_is_refused(client: httpx.Client, target: Target) -> None:
    naive = submit(client, method="GET", name=target.url("/echo"), at="2030-01-01T09:00:00")
    assert naive.status_code == 400 and naive.json()["field"] == "at"
    both = submit(client, method="GET", name=target.url("/echo"), at=time.time() + 5, delay=5)
    assert both.status_code == 400 and both.json()["field"] == "at"


def test_the_earlier_job_runs_first_whatever_the_submission_order(client: httpx.Client, fresh_target: Target) -> None:
    now = time.time()
    accepted(client, id="second", method="GET", name=fresh_target.url("/echo"), at=now + 2.0)
    accepted(client, id="first", method="GET", name=fresh_target.url("/echo"), delay=1.0)
    accepted(client, id="third", method="GET", name=fresh_target.url("/echo"), at=now + 2.6)

    for job_id in ("first", "second", "third"):
        assert result(client, job_id)["status"] == "succeeded"
    order = [call.job_id for call in sorted(fresh_target.calls, key=lambda call: call.at)]
    assert order == ["first", "second", "third"]
