"""Prometheus metrics of the HTTP workers, through `prometheus_client` in multi-process mode.

The server sets ``PROMETHEUS_MULTIPROC_DIR`` before it starts the workers; each worker
writes its values to files there and ``/metrics`` (in any worker) aggregates them all.
Without that variable (the app used on its own), a process-local registry is used.

An observation through prometheus_client costs about 12 µs in multi-process mode (a lock
and an mmap'd write per value), which is most of a proof request's budget. So a worker
counts requests and latencies in plain Python per endpoint, and `flush()` (once a second,
and before every scrape) adds the accumulated counts to the prometheus_client values.
"""

from __future__ import annotations

import bisect
import os
from typing import Any

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _Local:
    """One endpoint's requests since the last flush."""

    __slots__ = ("counts", "total", "by_status")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.by_status: dict[int, int] = {}


class Metrics:
    """The worker's metrics: request counters and latency histograms per endpoint, tree gauges."""

    def __init__(self) -> None:
        import prometheus_client as pc

        self._pc = pc
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = pc.CollectorRegistry()
        kw: dict[str, Any] = {"registry": None if self.multiprocess else self.registry}
        gauge_kw: dict[str, Any] = {**kw, "multiprocess_mode": "mostrecent"}
        self.requests = pc.Counter("rotorshm_http_requests", "HTTP requests answered",
                                   ["endpoint", "status"], **kw)
        self.latency = pc.Histogram("rotorshm_http_request_duration_seconds",
                                    "Time from request to response, per endpoint",
                                    ["endpoint"], buckets=BUCKETS, **kw)
        self.size = pc.Gauge("rotorshm_tree_size", "Leaves in the worker's snapshot",
                             **gauge_kw)
        self.published = pc.Gauge("rotorshm_tree_published_seq",
                                  "WAL sequence of the last publication", **gauge_kw)
        self.durable = pc.Gauge("rotorshm_tree_durable_seq",
                                "Highest WAL sequence the writer reports durable", **gauge_kw)
        self.alive = pc.Gauge("rotorshm_writer_alive", "1 while the writer daemon is alive",
                              **gauge_kw)
        self._pending: dict[str, _Local] = {}

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one request (cheap: plain Python, published by `flush`)."""
        local = self._pending.get(endpoint)
        if local is None:
            local = self._pending[endpoint] = _Local()
        local.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        local.total += seconds
        local.by_status[status] = local.by_status.get(status, 0) + 1

    def set_tree(self, *, size: int, published_seq: int | None, durable_seq: int | None,
                 alive: bool) -> None:
        """Set the tree gauges."""
        self.size.set(size)
        if published_seq is not None:
            self.published.set(published_seq)
        if durable_seq is not None:
            self.durable.set(durable_seq)
        self.alive.set(1 if alive else 0)

    def flush(self) -> None:
        """Add what `observe` accumulated to the prometheus_client values."""
        pending, self._pending = self._pending, {}
        for endpoint, local in pending.items():
            for status, n in local.by_status.items():
                self.requests.labels(endpoint, str(status)).inc(n)
            hist = self.latency.labels(endpoint)
            buckets = getattr(hist, "_buckets", None)
            total = getattr(hist, "_sum", None)
            if buckets is not None and total is not None and len(buckets) == len(local.counts):
                for value, n in zip(buckets, local.counts, strict=True):
                    if n:
                        value.inc(n)
                total.inc(local.total)
            else:  # another prometheus_client layout: replay at the bucket bounds
                bounds = (*BUCKETS, BUCKETS[-1] * 2)
                for bound, n in zip(bounds, local.counts, strict=True):
                    for _ in range(n):
                        hist.observe(bound)

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every worker's metrics, and its content type."""
        pc = self._pc
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = pc.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = self.registry
        return pc.generate_latest(registry), pc.CONTENT_TYPE_LATEST
