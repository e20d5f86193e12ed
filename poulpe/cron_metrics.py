"""The cron lines in /metrics (SPEC 10): fires by what became of them, and lines running or paused, read from the
Crontab at scrape time."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from poulpe.crontab import FIRE_OUTCOMES, Crontab


class CronMetrics(Collector):
    def __init__(self, crontab: Crontab) -> None:
        self.crontab = crontab

    def collect(self) -> Iterable[Metric]:
        fires = CounterMetricFamily(
            "poulpe_cron_fires",
            "Cron fires handled by this process, by outcome: fired, skipped (overlap=skip), replaced (a running or "
            "waiting fire cancelled by overlap=replace), paused, caught_up, run_now, backfilled",
            labels=["outcome"],
        )
        for outcome in FIRE_OUTCOMES:
            fires.add_metric([outcome], self.crontab.counts[outcome])
        yield fires
        lines = GaugeMetricFamily("poulpe_cron_lines", "Cron lines in the file, by state", labels=["state"])
        paused = sum(self.crontab.paused(line) for line in self.crontab.lines)
        lines.add_metric(["running"], len(self.crontab.lines) - paused)
        lines.add_metric(["paused"], paused)
        yield lines

    def describe(self) -> Iterable[Metric]:
        return self.collect()
