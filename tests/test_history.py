"""The dashboard's history: rates and lateness quantiles per point, read from the metrics poulpe keeps anyway."""

from __future__ import annotations

from poulpe.history import History, quantile
from poulpe.job import Job, Method, Status
from poulpe.metrics import Metrics


def test_a_quantile_is_read_inside_its_bucket_as_prometheus_does() -> None:
    buckets = [(0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == 0.01
    assert abs((quantile(0.99, buckets) or 0) - 0.91) < 1e-9
    assert quantile(0.5, [(1.0, 0.0), (float("inf"), 0.0)]) is None


def test_each_second_becomes_a_point_with_its_rates_and_lateness() -> None:
    now = [1000.0]
    metrics = Metrics()
    history = History(metrics, queued=lambda: 7, running=lambda: 3, clock=lambda: now[0])
    history.sample()  # the first reading: no point yet
    for n in range(4):
        job = Job(id=f"j{n}", method=Method.GET, name="http://x/", run_at=999.0, status=Status.SUCCEEDED)
        job.started_at = 999.0 + (0.002 if n < 3 else 0.4)
        metrics.started(job.started_at - job.run_at)
        metrics.ended(job.method.value, job.status, None, failed=False)
    now[0] += 2.0
    history.sample()
    [point] = history.view()["seconds"]
    t, done, failed, p50, p99, queued, running = point
    assert (t, done, failed, queued, running) == (1002.0, 2.0, 0.0, 7, 3)  # four jobs in two seconds
    assert p50 is not None and 0.001 <= p50 <= 0.0025
    assert p99 is not None and 0.25 <= p99 <= 0.5
    assert history.view()["minutes"] == []
