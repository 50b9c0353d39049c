"""The tutorial's DeploymentHandle calls against the deployed app."""

import asyncio

import numpy as np
import pytest

from serve_app.errors import InvalidInputError


def test_tutorial_handle_call_returns_predicted_labels(app_handle):
    batch = {"image": np.random.rand(10, 1, 28, 28)}
    response = app_handle.predict.remote(batch).result()
    assert isinstance(response, dict)
    assert len(response["predicted_label"]) == 10
    assert all(0 <= label <= 9 for label in response["predicted_label"])


async def _await_handle(app_handle, batch):
    return await app_handle.predict.remote(batch)


def test_handle_is_awaitable_as_in_the_tutorial(app_handle, example_digits):
    images, labels = example_digits
    response = asyncio.run(_await_handle(app_handle, {"image": images[:, None]}))
    assert response["predicted_label"] == labels.tolist()


def test_handle_rejects_bad_input_with_the_same_message(app_handle):
    with pytest.raises(Exception, match="NaN or infinity") as caught:
        app_handle.predict.remote({"image": np.full((1, 1, 28, 28), np.nan)}).result()
    assert isinstance(caught.value, InvalidInputError) or "InvalidInputError" in str(caught.value)
