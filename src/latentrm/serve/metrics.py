"""Prometheus metrics for the reward server, on a registry of its own (one per app, so tests can run many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("latentrm_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("latentrm_request_latency_seconds", "HTTP request latency by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("latentrm_batch_size", "items scored per forward pass",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_tokens = Histogram("latentrm_batch_tokens", "padded tokens per forward pass (items x longest)",
                                      buckets=TOKEN_BUCKETS, registry=r)
        self.forward_seconds = Histogram("latentrm_forward_seconds", "time of one batched reward-model call",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("latentrm_queue_wait_seconds", "time an item waits before its forward starts",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("latentrm_queue_depth", "items waiting to be scored", registry=r)
        self.items = Counter("latentrm_items_scored", "items scored", registry=r)
        self.rejected = Counter("latentrm_rejected", "requests refused before scoring, by reason", ["reason"],
                                registry=r)
        self.cancelled = Counter("latentrm_cancelled_items", "queued items dropped because the client went away",
                                 registry=r)
        self.split_mismatch = Counter("latentrm_split_roundtrip_mismatch",
                                      "/get_reward queries whose parsed turns do not re-render to the same text",
                                      registry=r)
        self.ready = Gauge("latentrm_ready", "1 once the reward model is loaded", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
