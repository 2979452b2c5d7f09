"""Prometheus metrics of one application, in a registry of its own.

A per-app ``CollectorRegistry`` (not prometheus-client's global one) lets several apps live
in one process (tests) without "Duplicated timeseries" errors. Gauges that describe the
present (runs by status, queue depth, running runs, open streams) are read from the store,
the executor and the bus at scrape time, so they can never drift; durations are observed
as they happen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.api.services.run_executor import Executor
from app.api.services.run_status import TERMINAL
from app.api.services.run_store import Store
from app.api.services.run_stream import Stream

RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))


class _LiveGauges(Collector):
    """Gauges computed from the live services at each scrape."""

    def __init__(self) -> None:
        self.store: Store | None = None
        self.executor: Executor | None = None
        self.stream: Stream | None = None

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily(
            "answer_runs",
            "Runs this process knows (APP_BACKEND=redis: every run), by status.",
            labels=["status"],
        )
        if self.store is not None:
            for status, count in self.store.count_by_status().items():
                runs.add_metric([status], count)
        yield runs
        if self.executor is not None:
            yield GaugeMetricFamily(
                "answer_queue_depth",
                "Runs waiting for a worker (submitted here; APP_BACKEND=redis: all).",
                value=self.executor.queued,
            )
            yield GaugeMetricFamily(
                "answer_runs_running",
                "Runs executing (in this process's workers; APP_BACKEND=redis: all).",
                value=self.executor.running,
            )
        if self.stream is not None:
            yield GaugeMetricFamily(
                "answer_sse_streams_open", "Open event streams.", value=self.stream.open_streams()
            )
        repairs = getattr(self.store, "repairs", None)
        if repairs is not None:
            found = GaugeMetricFamily(
                "answer_startup_repairs",
                "What start-up found half done after a crash and finished or removed, by kind.",
                labels=["kind"],
            )
            for kind, count in repairs.items():
                found.add_metric([kind], count)
            yield found


class Metrics:
    """The registry, the histograms and the hooks that feed them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._live = _LiveGauges()
        self.registry.register(self._live)
        self.run_duration = Histogram(
            "answer_run_duration_seconds",
            "Time from running to a terminal state, by terminal status.",
            ["status"],
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "answer_http_request_duration_seconds",
            "HTTP request latency (whole response, streams included) by route template.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}

    def bind(self, *, store: Store, executor: Executor, stream: Stream) -> None:
        """Read the live gauges from these (the lifespan built them)."""
        self._live.store, self._live.executor, self._live.stream = store, executor, stream

    def run_listener(self, run_id: str, kind: str, payload: dict[str, Any]) -> None:
        """For FileRunStore.add_listener: time each run from ``running`` to its terminal state."""
        if kind != "status":
            return
        status = payload.get("status")
        now = time.monotonic()
        with self._lock:
            if status == "running":
                self._started[run_id] = now
                return
            if status not in TERMINAL:
                return
            started = self._started.pop(run_id, None)
        if started is not None:  # never ran here (cancelled while queued, reconciled): no time
            self.run_duration.labels(status=status).observe(now - started)

    def observe_run(self, status: str, seconds: float) -> None:
        """A run's duration measured elsewhere (a Celery worker's run, from Redis)."""
        self.run_duration.labels(status=status).observe(seconds)

    def forget(self, run_id: str) -> None:
        """For FileRunStore.add_removal_listener."""
        with self._lock:
            self._started.pop(run_id, None)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
