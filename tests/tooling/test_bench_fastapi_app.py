"""bench.fastapi_app, the plain FastAPI reference (c): the graph's contract, JSON and .npy bodies."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bench.fastapi_app import create_app
from serve_app.inputs import NPY_MEDIA_TYPE
from tests.support.payloads import npy_bytes


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app())


@pytest.mark.parametrize("path", ["/predict", "/"])
def test_json_bodies_are_classified(client, example_digits, path):
    images, labels = example_digits
    answer = client.post(path, json={"image": images.tolist()}).json()
    assert answer["predicted_label"] == labels.tolist()
    assert len(answer["probabilities"]) == 10 and answer["model_id"] == "mnist-cnn"


def test_npy_bodies_get_the_same_answer(client, example_digits):
    images, labels = example_digits
    response = client.post("/predict", content=npy_bytes(images), headers={"Content-Type": NPY_MEDIA_TYPE})
    assert response.status_code == 200
    assert response.json()["predicted_label"] == labels.tolist()


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"not an array", NPY_MEDIA_TYPE, 400),
        (npy_bytes(np.zeros((2, 27, 28), dtype=np.uint8)), NPY_MEDIA_TYPE, 422),
        (npy_bytes(np.full((1, 28, 28), np.nan)), NPY_MEDIA_TYPE, 422),
    ],
)
def test_bad_bodies_get_the_graph_s_errors(client, body, content_type, status):
    response = client.post("/predict", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert response.json()["status"] == status
