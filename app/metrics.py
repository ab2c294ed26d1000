"""Prometheus metrics, one registry per app (tests run several apps in one process): requests and latency per
route, the search stages, and background jobs. Served at ``GET /metrics``."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Latency buckets from 1 ms to 10 s: searches land in the tens of ms, uploads and loads in seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "imgsearch_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "imgsearch_http_request_duration_seconds",
            "Time inside the service per request, by route template.",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "imgsearch_search_stage_duration_seconds",
            "Search time by stage: encode, vector_search, metadata_fetch, vector_fetch.",
            ["stage"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.jobs = Counter(
            "imgsearch_jobs", "Background jobs by kind and final state.", ["kind", "state"], registry=self.registry
        )
        self.jobs_active = Gauge("imgsearch_jobs_active", "Jobs queued or running.", registry=self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_stages(self, timings_ms: Mapping[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stages.labels(stage).observe(ms / 1000)

    def job_finished(self, kind: str, state: str) -> None:
        self.jobs.labels(kind, state).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
