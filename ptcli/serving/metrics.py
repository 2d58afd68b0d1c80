"""Prometheus metrics of one server, in a registry of its own (several apps in one process stay
apart): requests by route, status and model; latency and its stages (queue wait, decode,
forward, encode); batch sizes, queue depth, inputs dropped
unrun and replica restarts per model. A request that names no model (/health, a 404) has
``model=""``."""

from __future__ import annotations

from collections.abc import Callable


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # the *_created series only repeat the start time

        self.registry = CollectorRegistry()
        self.requests = Counter("ptcli_requests", "HTTP requests, by route, status and model.", ["route", "status", "model"],
                                registry=self.registry)
        self.latency = Histogram("ptcli_request_latency_seconds", "Time from request to response.", ["route", "model"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)
        self.batch_size = Histogram("ptcli_batch_size", "Inputs per forward pass.", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.stages = Histogram(
            "ptcli_stage_seconds", "Where an input's time goes, by stage: queue_wait (for its batch), decode, "
            "forward (one observation per batch: its pass) and encode (its result made into the response).",
            ["model", "stage"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry)
        self.depth = Gauge("ptcli_queue_depth", "Inputs waiting for the model.", ["model"], registry=self.registry)
        self.dropped = Counter("ptcli_dropped_inputs", "Inputs dropped unrun: their request had timed out or gone.",
                               ["model"], registry=self.registry)
        self.restarts = Counter("ptcli_replica_restarts", "Model processes restarted after they died.", ["model"],
                                registry=self.registry)

    def add_model(self, name: str, queue_depth: Callable[[], int]) -> None:
        self.depth.labels(model=name).set_function(queue_depth)
        self.dropped.labels(model=name)  # a series at 0 from the start, for rate() and alerts
        self.restarts.labels(model=name)

    def observe_stages(self, model: str, pairs: list) -> None:
        """(stage, seconds) pairs of one model's inputs or batches."""
        for stage, seconds in pairs:
            self.stages.labels(model=model, stage=stage).observe(seconds)

    def observe(self, route: str, status: int, seconds: float, model: str = "") -> None:
        self.requests.labels(route=route, status=str(status), model=model).inc()
        self.latency.labels(route=route, model=model).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
