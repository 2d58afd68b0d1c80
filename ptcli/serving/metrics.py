"""Prometheus metrics of one server: requests by route and status, latency, batch sizes and
queue depth, in a registry of its own (several apps in one process stay apart)."""

from __future__ import annotations


class Metrics:
    def __init__(self, queue_depth) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # the *_created series only repeat the start time

        self.registry = CollectorRegistry()
        self.requests = Counter("ptcli_requests", "HTTP requests, by route and status.", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("ptcli_request_latency_seconds", "Time from request to response.", ["route"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)
        self.batch_size = Histogram("ptcli_batch_size", "Inputs per forward pass.", buckets=(1, 2, 4, 8, 16, 32, 64, 128),
                                    registry=self.registry)
        depth = Gauge("ptcli_queue_depth", "Inputs waiting for the model.", registry=self.registry)
        depth.set_function(queue_depth)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
