"""Prometheus series of one server, in a registry of its own.

A per-app CollectorRegistry (not prometheus_client's global one) lets tests, or one process,
build several apps without "duplicated timeseries" errors. Endpoint labels are route templates
("/v1/items/{item_id}") or "other", never raw paths: clients cannot grow the series without bound.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Requests take ~0.5-5 ms; the upper buckets catch queueing under load.
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("edgerec_requests", "HTTP requests answered, by endpoint and status.",
                                ["endpoint", "status"], registry=self.registry)
        self.duration = Histogram("edgerec_request_duration_seconds", "Time to answer a request, by endpoint.",
                                  ["endpoint"], buckets=_BUCKETS, registry=self.registry)
        self.bundle_info = Gauge("edgerec_bundle_info", "The bundle being served (value 1).",
                                 ["name", "version"], registry=self.registry)
        self.ready = Gauge("edgerec_ready", "1 once the bundle is loaded and warm.", registry=self.registry)
        self.reloads = Counter("edgerec_reloads", "Reload attempts, by outcome (swapped, unchanged, failed).",
                               ["outcome"], registry=self.registry)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.duration.labels(endpoint).observe(seconds)

    def serving(self, name: str, version: str) -> None:
        self.bundle_info.clear()  # one series: the version now served
        self.bundle_info.labels(name, version).set(1)
        self.ready.set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
