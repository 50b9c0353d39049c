"""All 10,000 real test images through HTTP and the whole graph: at least 99.0% correct."""

import numpy as np
import pytest

BATCH = 250


@pytest.mark.slow
def test_http_accuracy_on_the_full_test_set(local_serve, mnist_test):
    predicted = []
    for start in range(0, len(mnist_test.images), BATCH):
        response = local_serve.post("/predict", json={"image": mnist_test.images[start : start + BATCH].tolist()})
        assert response.status_code == 200, response.text
        predicted.extend(response.json()["predicted_label"])
    accuracy = float(np.mean(np.asarray(predicted) == mnist_test.labels))
    print(f"HTTP accuracy on {len(predicted)} real test images: {accuracy:.2%}")
    assert len(predicted) == 10000
    assert accuracy >= 0.99
