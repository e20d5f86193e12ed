"""An operator scrapes /metrics after a mix of jobs: the counters and histograms move as the jobs did."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.e2e.helpers import accepted, eventually, result, submit
from tests.serving import ServedPoulpe
from tests.target import Target


@pytest.fixture(scope="module")
def proc(module_served: Callable[..., ServedPoulpe]) -> ServedPoulpe:
    return module_served("--workers", "3", "--max_retry", "1")


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, labels), parsed with prometheus-client's own parser."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples: list[Sample] = [s for family in text_string_to_metric_families(answer.text) for s in family.samples]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_and_histograms_follow_a_mix_of_jobs(client: httpx.Client, fresh_target: Target) -> None:
    before = scrape(client)
    fast = {"max": 1, "interval": 0.05}
    for n in range(3):
        accepted(client, id=f"m-ok-{n}", method="GET", name=fresh_target.url("/echo"))
    accepted(client, id="m-flaky", method="POST", name=fresh_target.url("/flaky/m", fail=1), retry=fast)
    accepted(client, id="m-dead", method="POST", name=fresh_target.url("/status/500"), retry=fast)
    accepted(client, id="m-later", method="GET", name=fresh_target.url("/echo"), delay=3600)
    assert submit(client, method="GET").status_code == 400  # no name: refused at intake
    assert submit(client, id="m-ok-0", method="GET", name=fresh_target.url("/echo")).status_code == 200  # duplicate
    for job_id, status in [("m-ok-0", "succeeded"), ("m-ok-1", "succeeded"), ("m-ok-2", "succeeded")]:
        assert result(client, job_id)["status"] == status
    assert result(client, "m-flaky")["status"] == "succeeded"
    assert result(client, "m-dead")["status"] == "dead"

    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("poulpe_jobs_accepted_total", method="GET") == 4  # the duplicate is not a new job
    assert moved("poulpe_jobs_accepted_total", method="POST") == 2
    assert moved("poulpe_jobs_succeeded_total", method="GET") == 3
    assert moved("poulpe_jobs_succeeded_total", method="POST") == 1
    assert moved("poulpe_jobs_retried_total", method="POST") == 2  # m-flaky once, m-dead once
    assert moved("poulpe_jobs_dead_total", method="POST") == 1
    assert moved("poulpe_attempts_failed_total", method="POST") == 3
    assert moved("poulpe_attempt_duration_seconds_count", method="GET") == 3
    assert moved("poulpe_attempt_duration_seconds_count", method="POST") == 4
    assert moved("poulpe_attempt_duration_seconds_sum", method="POST") > 0
    assert moved("poulpe_job_lateness_seconds_count") == 7  # one per attempt
    assert moved("poulpe_intake_errors_total", status="400") == 1
    assert value(after, "poulpe_jobs", status="scheduled") == 1  # m-later
    assert value(after, "poulpe_jobs", status="dead") >= 1
    assert value(after, "poulpe_dead_letter_write_errors_total") == 0
    assert value(after, "poulpe_store_operation_seconds_count", op="add") >= 7
    assert value(after, "poulpe_worker_busy", worker="2") == 0
    # histograms are cumulative: every attempt is in the +Inf bucket
    assert value(after, "poulpe_job_lateness_seconds_bucket", le="+Inf") == value(
        after, "poulpe_job_lateness_seconds_count"
    )


def test_labels_are_bounded_never_ids_or_urls(client: httpx.Client, fresh_target: Target) -> None:
    accepted(client, id="m-label-secret-id", method="GET", name=fresh_target.url("/echo", k="secret-url-part"))
    result(client, "m-label-secret-id")
    text = client.get("/metrics").text
    assert "m-label-secret-id" not in text
    assert "secret-url-part" not in text and "127.0.0.1" not in text
    label_names = {
        label for family in text_string_to_metric_families(text) for s in family.samples for label in s.labels
    }
    assert label_names <= {"method", "status", "worker", "op", "le", "type"}  # type: an alert type (4 values)


def test_a_running_job_shows_on_its_worker(client: httpx.Client, fresh_target: Target) -> None:
    accepted(client, id="m-slow", method="GET", name=fresh_target.url("/slow", ms=1500), cc="1")

    def busy() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        samples = scrape(client)
        running = value(samples, "poulpe_jobs", status="running")  # the store's count, written just after
        return samples if value(samples, "poulpe_worker_busy", worker="1") == 1 and running >= 1 else None

    samples = eventually(busy)
    assert value(samples, "poulpe_jobs", status="running") >= 1
    result(client, "m-slow")
