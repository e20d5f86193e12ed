"""poulpe's loop-counted histograms export what prometheus-client's own Histogram would, for the same observations."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from poulpe.job import Status
from poulpe.loop_histogram import LoopHistogram
from poulpe.metrics import Metrics

BUCKETS = (0.001, 0.01, 0.1, 1, 10)
SEEN = (0.0, 0.001, 0.0011, 0.05, 0.1, 3.0, 10.0, 250.0)


def text(registry: CollectorRegistry) -> str:
    # the creation times differ by microseconds: compare the rest, and that each series has one
    return re.sub(r"(_created\{?[^ ]*) [0-9.e+]+", r"\1 T", generate_latest(registry).decode())


def test_the_exposition_is_prometheus_client_s_own_for_the_same_observations() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = LoopHistogram("job_lateness_seconds", "Lateness", buckets=BUCKETS, registry=ours)
    labelled = LoopHistogram("attempt_seconds", "Duration", ["method"], buckets=BUCKETS, registry=ours)
    reference = Histogram("job_lateness_seconds", "Lateness", buckets=BUCKETS, registry=theirs)
    reference_labelled = Histogram("attempt_seconds", "Duration", ["method"], buckets=BUCKETS, registry=theirs)
    for method in ("GET", "POST"):  # series made before any observation show at zero, as the client's
        labelled.labels(method)
        reference_labelled.labels(method)
    for value in SEEN:
        mine.observe(value)
        reference.observe(value)
        labelled.labels("POST").observe(value * 2)
        reference_labelled.labels("POST").observe(value * 2)
    assert text(ours) == text(theirs)
    assert "_created" in text(ours)


def test_poulpe_s_lateness_and_duration_series_read_as_before() -> None:
    metrics = Metrics()
    metrics.started(0.002)
    metrics.ended("GET", Status.SUCCEEDED, 0.02, failed=False)
    exposed = generate_latest(metrics.registry).decode()
    assert 'poulpe_job_lateness_seconds_bucket{le="0.0025"} 1.0' in exposed
    assert 'poulpe_attempt_duration_seconds_bucket{le="0.025",method="GET"} 1.0' in exposed
    assert 'poulpe_attempt_duration_seconds_count{method="POST"} 0.0' in exposed
