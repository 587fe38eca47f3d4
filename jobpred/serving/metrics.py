"""The request metrics of the Serve ingress, defined once and exported two ways.

- :class:`PromMetrics`: this replica's counts in its own prometheus_client registry (``GET /metrics``).
- :class:`RayMetrics`: the same metrics as Ray metrics (``ray.util.metrics``), scraped with Serve's own
  from Ray's metrics port, summed over every ingress replica.

Both are observers of :class:`jobpred.serving.app.Settings`: called ``(route, status, predictor, seconds)``
after each request. A request without a predictor (the OpenAI routes) is labelled ``predictor="-"``.
Their libraries are imported when one is built (this module is imported where Ray is not).
"""

from __future__ import annotations

REQUESTS = "jobpred_requests"
REQUESTS_HELP = "HTTP requests by route, status and predictor."
REQUESTS_LABELS = ("route", "status", "predictor")
LATENCY = "jobpred_request_seconds"
LATENCY_HELP = "Request latency by route, seconds."
LATENCY_LABELS = ("route",)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)


def _request_labels(route: str, status: int, predictor: str) -> tuple[str, str, str]:
    """Values of :data:`REQUESTS_LABELS`, in that order."""
    return route, str(status), predictor or "-"


class PromMetrics:
    """This replica's request counter and latency histogram, in its own prometheus_client registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(REQUESTS, REQUESTS_HELP, REQUESTS_LABELS, registry=self.registry)
        self.latency = Histogram(LATENCY, LATENCY_HELP, LATENCY_LABELS, buckets=LATENCY_BUCKETS,
                                 registry=self.registry)

    def __call__(self, route: str, status: int, predictor: str, seconds: float) -> None:
        self.requests.labels(*_request_labels(route, status, predictor)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class RayMetrics:
    """The same counter and histogram as Ray metrics (aggregated by Ray over the ingress replicas)."""

    def __init__(self) -> None:
        from ray.util import metrics

        self.requests = metrics.Counter(REQUESTS, REQUESTS_HELP, tag_keys=REQUESTS_LABELS)
        self.latency = metrics.Histogram(LATENCY, LATENCY_HELP, boundaries=list(LATENCY_BUCKETS),
                                         tag_keys=LATENCY_LABELS)

    def __call__(self, route: str, status: int, predictor: str, seconds: float) -> None:
        self.requests.inc(tags=dict(zip(REQUESTS_LABELS, _request_labels(route, status, predictor))))
        self.latency.observe(seconds, tags={"route": route})
