"""Every custom metric of mnist-serve, declared in one place (``ray.serve.metrics``).

Ray exports them on each node's metrics port (8080 in the chart) with the ``ray_`` prefix,
and counters with a ``_total`` suffix: ``mnist_requests_total`` is scraped as
``ray_mnist_requests_total``. Serve adds the tags ``deployment``, ``replica`` and
``application`` to metrics created inside a replica.

| metric | type | tags | recorded by |
|---|---|---|---|
| mnist_requests_total | counter | model, outcome | Ingress, per request (outcome: HTTP status code) |
| mnist_request_latency_ms | histogram | route | Ingress, end to end inside the graph |
| mnist_model_latency_ms | histogram | model | Classifier, per model call |
| mnist_batch_size | histogram | model | Ingress (requests per graph call) and Classifier (per model call) |
| mnist_predicted_digit_total | counter | model, digit | Classifier, per image (a drift signal) |
| mnist_model_loads_total | counter | model | Classifier, model loaded into a replica |
| mnist_model_cache_hits_total | counter | model | Classifier, model already loaded |
| mnist_model_evictions_total | counter | model | Classifier, model evicted (LRU) from a replica |

Metric objects must be created inside the replica's process; the ``*_metrics()``
functions create them once per process, on first use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ray.serve import metrics

#: Histogram bucket upper bounds, in milliseconds.
LATENCY_BOUNDARIES_MS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
#: Histogram bucket upper bounds, in requests per model call.
BATCH_SIZE_BOUNDARIES: list[float] = [1, 2, 4, 8, 16, 32, 64, 128, 256]


@dataclass(frozen=True)
class IngressMetrics:
    """Metrics recorded by the Ingress."""

    requests: metrics.Counter
    request_latency_ms: metrics.Histogram
    batch_size: metrics.Histogram


@dataclass(frozen=True)
class ClassifierMetrics:
    """Metrics recorded by the Classifier."""

    model_latency_ms: metrics.Histogram
    batch_size: metrics.Histogram
    predicted_digits: metrics.Counter
    model_loads: metrics.Counter
    cache_hits: metrics.Counter
    evictions: metrics.Counter


def _batch_size_histogram() -> metrics.Histogram:
    """Recorded by both batching deployments; Serve's ``deployment`` tag tells them apart."""
    return metrics.Histogram(
        "mnist_batch_size",
        description="Requests merged into one call by dynamic batching "
        "(Ingress: one graph call; Classifier: one model call).",
        boundaries=BATCH_SIZE_BOUNDARIES,
        tag_keys=("model",),
    )


@functools.cache
def ingress_metrics() -> IngressMetrics:
    """The Ingress's metrics (created once per process)."""
    return IngressMetrics(
        requests=metrics.Counter(
            "mnist_requests",
            description="Requests answered, by model and HTTP status.",
            tag_keys=("model", "outcome"),  # type: ignore[arg-type]  # Ray annotates Tuple[str] (one key); any number works
        ),
        request_latency_ms=metrics.Histogram(
            "mnist_request_latency_ms",
            description="Time from the Ingress receiving a request to its answer, in ms.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("route",),
        ),
        batch_size=_batch_size_histogram(),
    )


@functools.cache
def classifier_metrics() -> ClassifierMetrics:
    """The Classifier's metrics (created once per process)."""
    return ClassifierMetrics(
        model_latency_ms=metrics.Histogram(
            "mnist_model_latency_ms",
            description="Time of one model call (a whole batch), in ms.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("model",),
        ),
        batch_size=_batch_size_histogram(),
        predicted_digits=metrics.Counter(
            "mnist_predicted_digit",
            description="Images classified, by predicted digit: a shift in the mix is a drift signal.",
            tag_keys=("model", "digit"),  # type: ignore[arg-type]  # Ray annotates Tuple[str] (one key); any number works
        ),
        model_loads=metrics.Counter(
            "mnist_model_loads", description="Models loaded into a Classifier replica.", tag_keys=("model",)
        ),
        cache_hits=metrics.Counter(
            "mnist_model_cache_hits",
            description="Model lookups answered by a model already loaded in the replica.",
            tag_keys=("model",),
        ),
        evictions=metrics.Counter(
            "mnist_model_evictions",
            description="Models evicted (least recently used) from a replica to make room.",
            tag_keys=("model",),
        ),
    )
