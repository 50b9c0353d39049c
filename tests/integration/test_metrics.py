"""Ray's Prometheus endpoint shows exact counts for the mnist_ metrics and Serve's own metrics."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np


def test_request_and_digit_counters_count_exactly(local_serve, example_digits):
    images, labels = example_digits
    # Serve's own counter comes from its Python proxy (route: the FastAPI route) or from HAProxy's
    # request log (route: the application's route prefix).
    serve_route = "/" if local_serve.http_entry == "haproxy" else "/predict"
    # (metric, labels, expected increase)
    counters = [
        ("ray_mnist_requests_total", {"model": "mnist-cnn", "outcome": "200"}, 7),
        ("ray_mnist_requests_total", {"model": "mnist-cnn", "outcome": "422"}, 2),
        ("ray_mnist_predicted_digit_total", {"model": "mnist-cnn", "digit": "7"}, 21),
        ("ray_serve_num_http_requests_total", {"application": "mnist", "route": serve_route, "status_code": "200"}, 7),
    ]
    for name, tags, _ in (counters[0], counters[-1]):
        local_serve.settled(name, **tags)  # everything earlier is exported now
    before = [local_serve.scrape(name, **tags) for name, tags, _ in counters]

    sevens = images[labels == 7]
    for _ in range(7):
        response = local_serve.post("/predict", json={"image": np.repeat(sevens, 3, axis=0).tolist()})
        assert response.json()["predicted_label"] == [7, 7, 7]
    for _ in range(2):
        assert local_serve.post("/predict", json={"image": [[[0] * 5]]}).status_code == 422

    for (name, tags, increase), start in zip(counters, before, strict=True):
        assert local_serve.wait_for_metric(name, start + increase, **tags) == start + increase, (name, tags)


def test_latency_histograms_observe_every_request(local_serve, example_digits):
    images, _ = example_digits
    latency = ("ray_mnist_request_latency_ms_count", {"route": "/predict"})
    model_latency = ("ray_mnist_model_latency_ms_count", {"model": "mnist-cnn"})
    before_requests = local_serve.settled(latency[0], **latency[1])
    before_calls = local_serve.scrape(model_latency[0], **model_latency[1])
    for _ in range(5):
        local_serve.post("/predict", json={"image": images[:1].tolist()}).raise_for_status()
    assert local_serve.wait_for_metric(latency[0], before_requests + 5, **latency[1]) == before_requests + 5
    # Sequential requests are never merged: one model call each.
    assert local_serve.wait_for_metric(model_latency[0], before_calls + 5, **model_latency[1]) == before_calls + 5


def test_concurrent_requests_are_batched(local_serve, example_digits):
    images, _labels = example_digits
    count = ("ray_mnist_batch_size_count", {"model": "mnist-cnn"})
    singles = ("ray_mnist_batch_size_bucket", {"model": "mnist-cnn", "le": "1.0"})
    before_calls = local_serve.settled(count[0], **count[1])
    before_singles = local_serve.scrape(singles[0], **singles[1])

    def classify(index: int) -> list[float]:
        response = local_serve.post("/predict", json={"image": [images[index % 10].tolist()]})
        return response.json()["probabilities"][0]

    with ThreadPoolExecutor(max_workers=32) as pool:
        batched = list(pool.map(classify, range(128)))
    # Unbatched answers, one request at a time: the same numbers image for image.
    alone = [classify(index) for index in range(10)]
    for index, probabilities in enumerate(batched):
        np.testing.assert_allclose(probabilities, alone[index % 10], rtol=1e-4, atol=1e-6)

    # Both series settled (exported after the last request), so that they count the same requests.
    local_serve.wait_for_metric(count[0], before_calls + 1, **count[1])
    calls = local_serve.settled(count[0], **count[1]) - before_calls
    single_calls = local_serve.settled(singles[0], **singles[1]) - before_singles
    # 138 requests were answered by fewer model calls: batches of more than one request happened.
    assert calls < 138
    assert calls - single_calls > 0
