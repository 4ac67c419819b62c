"""The service's Prometheus metrics, in a registry of its own (two services in one process stay apart).

    lwop_requests_total{endpoint, status}   every HTTP request answered and every stream frame
    lwop_request_seconds{endpoint}          time to answer (histogram)
    lwop_queue_depth                        inferences waiting for a worker
    lwop_inferences_admitted                inferences running or waiting
    lwop_people_per_image                   people found per image or frame (histogram)

``endpoint`` is a route of the service, or ``other`` for paths it does not have (a client must not be able
to create label values at will).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PEOPLE_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89)


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, pool=None):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            'lwop_requests',
            'HTTP requests answered and stream frames, by endpoint and status code',
            ['endpoint', 'status'],
            registry=self.registry,
        )
        self.latency = Histogram(
            'lwop_request_seconds',
            'Time to answer a request or a stream frame, by endpoint',
            ['endpoint'],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.people = Histogram(
            'lwop_people_per_image', 'People found per image or frame', buckets=PEOPLE_BUCKETS, registry=self.registry
        )
        queue_depth = Gauge('lwop_queue_depth', 'Inferences waiting for a worker', registry=self.registry)
        admitted = Gauge('lwop_inferences_admitted', 'Inferences running or waiting', registry=self.registry)
        if pool is not None:
            queue_depth.set_function(lambda: pool.waiting)
            admitted.set_function(lambda: pool.admitted)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
