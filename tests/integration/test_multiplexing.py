"""Model multiplexing over HTTP and handles: own predictions per model, LRU, 404, with batching."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from ray import serve

from serve_app.config import APP_NAME

HEADER = "serve_multiplexed_model_id"


def classify(local_serve, images: np.ndarray, model_id: str | None = None) -> list[int]:
    headers = {HEADER: model_id} if model_id else {}
    response = local_serve.post("/predict", json={"image": images.tolist()}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["model_id"] == (model_id or "mnist-cnn")
    return response.json()["predicted_label"]


def test_models_endpoint_lists_the_store(local_serve):
    body = local_serve.get("/models").json()
    assert body["default_model_id"] == "mnist-cnn" and body["header"] == HEADER
    models = {m["model_id"]: m for m in body["models"]}
    assert set(models) == {"mnist-cnn", "mnist-cnn-small", "mnist-cnn-inverted"}
    assert models["mnist-cnn"]["default"] and not models["mnist-cnn-small"]["default"]
    assert models["mnist-cnn-inverted"]["pixel_transform"] == "invert"
    assert all(m["test_accuracy"] >= 0.98 for m in models.values())


def test_each_model_gives_its_own_predictions(local_serve, mnist_test):
    plain = mnist_test.images[:200]
    inverted = 255 - plain
    truth = mnist_test.labels[:200]

    def accuracy(predicted: list[int]) -> float:
        return float(np.mean(np.asarray(predicted) == truth))

    assert accuracy(classify(local_serve, plain)) >= 0.97  # no header: the default model
    assert accuracy(classify(local_serve, inverted, "mnist-cnn-inverted")) >= 0.97
    assert accuracy(classify(local_serve, plain, "mnist-cnn-small")) >= 0.97
    # The variants differ measurably: each model fails on the other's inputs.
    assert accuracy(classify(local_serve, inverted)) < 0.5
    assert accuracy(classify(local_serve, plain, "mnist-cnn-inverted")) < 0.5


def test_unknown_model_is_a_404_listing_the_known_ones(local_serve, example_digits):
    images, _ = example_digits
    response = local_serve.post("/predict", json={"image": images[:1].tolist()}, headers={HEADER: "mnist-gpt"})
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert "mnist-gpt" in detail
    for known in ("mnist-cnn", "mnist-cnn-small", "mnist-cnn-inverted"):
        assert known in detail
    upload = local_serve.post(
        "/predict/image", files={"files": ("d.png", b"x", "image/png")}, headers={HEADER: "../etc"}
    )
    assert upload.status_code == 404


def test_repeated_requests_do_not_reload_and_lru_evicts(local_serve, example_digits):
    images, _ = example_digits
    classifier = serve.get_deployment_handle("Classifier", APP_NAME)
    loads = lambda model: local_serve.scrape("ray_mnist_model_loads_total", model=model)  # noqa: E731
    hits = lambda model: local_serve.scrape("ray_mnist_model_cache_hits_total", model=model)  # noqa: E731

    classify(local_serve, images[:1], "mnist-cnn-small")
    assert "mnist-cnn-small" in classifier.loaded_models.remote().result()
    # The load just happened: wait until it is exported, then until nothing more arrives.
    local_serve.wait_for_metric("ray_mnist_model_loads_total", 1, model="mnist-cnn-small")
    loads_before = local_serve.settled("ray_mnist_model_loads_total", model="mnist-cnn-small")
    hits_before = hits("mnist-cnn-small")
    for _ in range(5):
        classify(local_serve, images[:1], "mnist-cnn-small")
    assert local_serve.wait_for_metric(
        "ray_mnist_model_cache_hits_total", hits_before + 5, model="mnist-cnn-small"
    ) >= (hits_before + 5)
    assert loads("mnist-cnn-small") == loads_before  # no reload

    # Two models per replica (the app's max_models_per_replica): a third evicts the least recently used.
    evictions_before = local_serve.settled("ray_mnist_model_evictions_total")
    classify(local_serve, images[:1], "mnist-cnn")
    classify(local_serve, images[:1], "mnist-cnn-small")
    classify(local_serve, images[:1], "mnist-cnn-inverted")  # evicts mnist-cnn
    assert classifier.loaded_models.remote().result() == ["mnist-cnn-small", "mnist-cnn-inverted"]
    assert local_serve.wait_for_metric("ray_mnist_model_evictions_total", evictions_before + 1) >= evictions_before + 1
    assert local_serve.scrape("ray_mnist_model_evictions_total", model="mnist-cnn") >= 1


def test_handle_chooses_a_model_with_options(app_handle, example_digits):
    images, labels = example_digits
    inverted = app_handle.options(multiplexed_model_id="mnist-cnn-inverted")
    response = inverted.predict.remote({"image": (255 - images)[:, None]}).result()
    assert response["model_id"] == "mnist-cnn-inverted"
    assert response["predicted_label"] == labels.tolist()
    with pytest.raises(Exception, match="unknown model id"):
        app_handle.options(multiplexed_model_id="nope").predict.remote({"image": images[:, None]}).result()


def test_batches_never_mix_models(local_serve, example_digits):
    images, labels = example_digits

    def one(index: int) -> tuple[list[int], int]:
        digit = index % 10
        if index % 2:
            return classify(local_serve, (255 - images[digit : digit + 1]), "mnist-cnn-inverted"), digit
        return classify(local_serve, images[digit : digit + 1]), digit

    # Concurrent requests for two models land in the same @serve.batch windows.
    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(one, range(96)))
    assert all(predicted == [int(labels[digit])] for predicted, digit in answers)
