"""Prometheus metrics of one server process (prometheus_client, in the text exposition format)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The server's metrics in their own registry (several apps in one process never collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("verikit_requests", "HTTP requests answered", ["route", "method", "status"], registry=r)
        self.latency = Histogram("verikit_request_seconds", "Time to answer a request", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("verikit_requests_in_flight", "Requests being answered now", registry=r)
        self.rejected = Counter("verikit_requests_rejected", "Requests refused by a limit", ["limit"], registry=r)
        self.batch_images = Histogram("verikit_batch_images", "Images per forward pass (micro-batching)",
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.forward_seconds = Histogram("verikit_forward_seconds", "Time of one forward pass",
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.identities = Gauge("verikit_gallery_identities", "Identities in the gallery", registry=r)
        self.templates = Gauge("verikit_gallery_templates", "Templates in the gallery", registry=r)

    def observe_batch(self, images: int, seconds: float) -> None:
        self.batch_images.observe(images)
        self.forward_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
