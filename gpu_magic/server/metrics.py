"""Operational figures in the Jupyter server's own ``/metrics`` (prometheus-client's registry):
jobs by state and cluster, bytes brought home, each host poll's round trip, monitor errors."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..api import Client

POLL_SECONDS = Histogram(
    "gpu_magic_poll_seconds",
    "One monitor poll of a host (state and new bytes of all its active jobs)",
    ["cluster"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
MONITOR_ERRORS = Counter("gpu_magic_monitor_errors", "Host polls that failed", ["cluster"])


class JobsCollector:
    """Read at each scrape from the store and the results service (nothing to keep in step)."""

    def __init__(self, client: Client):
        self.client = client

    def collect(self):
        jobs = GaugeMetricFamily("gpu_magic_jobs", "Stored jobs", labels=["cluster", "status"])
        for cluster, status, count in self.client.store.count_by_state():
            jobs.add_metric([cluster, status], count)
        yield jobs
        moved = CounterMetricFamily(
            "gpu_magic_transferred_bytes", "Bytes of results brought home by this server"
        )
        moved.add_metric([], self.client.results.bytes_moved())
        yield moved


_COLLECTOR: JobsCollector | None = None


def register_metrics(client: Client) -> JobsCollector:
    """The collector reads the newest server's Client (one registry per process: a server
    started again in the same process, as in tests, takes the same collector over)."""
    global _COLLECTOR
    if _COLLECTOR is None:
        _COLLECTOR = JobsCollector(client)
        REGISTRY.register(_COLLECTOR)
    _COLLECTOR.client = client
    client.monitor.on_tick(_observe)
    return _COLLECTOR


def _observe(cluster: str, seconds: float, error: str | None) -> None:
    POLL_SECONDS.labels(cluster).observe(seconds)
    if error is not None:
        MONITOR_ERRORS.labels(cluster).inc()
