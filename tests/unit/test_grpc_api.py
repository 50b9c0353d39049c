"""The gRPC API's pure half: request messages -> validated pixels, answers -> messages, error codes,
and stubs that match the proto."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from serve_app import errors
from serve_app.config import REPO_ROOT
from serve_app.errors import InvalidInputError, PayloadTooLargeError
from serve_app.grpc_api import (
    PIXELS_PER_IMAGE,
    STUB_NAMES,
    call_metadata,
    generate_stubs,
    models_response,
    predict_response,
    request_pixels,
)
from serve_app.proto.mnist_pb2 import PredictRequest, ScaledPixels

DIGITS = np.asarray(json.loads((REPO_ROOT / "examples/digits/digits-10.json").read_text())["image"], dtype=np.uint8)


def test_raw_bytes_are_uint8_digits_in_row_major_order():
    pixels = request_pixels(PredictRequest(raw=DIGITS.tobytes()), max_images=256)
    assert pixels.dtype == np.uint8 and pixels.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(pixels[:, 0], DIGITS)


def test_scaled_values_are_unit_floats():
    values = (DIGITS[:2] / 255).ravel().tolist()
    pixels = request_pixels(PredictRequest(scaled=ScaledPixels(values=values)), max_images=256)
    assert pixels.dtype == np.float32 and pixels.shape == (2, 1, 28, 28)
    np.testing.assert_allclose(pixels[:, 0] * 255, DIGITS[:2], atol=1e-3)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (PredictRequest(), "has no pixels"),
        (PredictRequest(raw=b""), "'raw' is empty"),  # a oneof member has presence, even when empty
        (PredictRequest(raw=bytes(PIXELS_PER_IMAGE + 1)), "not a whole number of 28x28 digits"),
        (PredictRequest(scaled=ScaledPixels(values=[])), "'scaled' is empty"),
        (PredictRequest(scaled=ScaledPixels(values=[0.5] * 100)), "holds 100 pixels"),
        (PredictRequest(scaled=ScaledPixels(values=[float("nan")] * PIXELS_PER_IMAGE)), "NaN"),
        (PredictRequest(scaled=ScaledPixels(values=[float("inf")] * PIXELS_PER_IMAGE)), "NaN or infinity"),
        (PredictRequest(scaled=ScaledPixels(values=[1.5] * PIXELS_PER_IMAGE)), "must lie in [0, 1]"),
        (PredictRequest(scaled=ScaledPixels(values=[-0.1] * PIXELS_PER_IMAGE)), "must lie in [0, 1]"),
    ],
)
def test_bad_pixels_are_invalid_input_with_a_message(request_, message):
    with pytest.raises(InvalidInputError) as caught:
        request_pixels(request_, max_images=256)
    assert message in str(caught.value)
    assert caught.value.grpc_code == grpc.StatusCode.INVALID_ARGUMENT


def test_more_images_than_the_limit_are_refused_before_decoding():
    with pytest.raises(PayloadTooLargeError, match="batch of 11 images exceeds this service's maximum of 10"):
        request_pixels(PredictRequest(raw=bytes(PIXELS_PER_IMAGE * 11)), max_images=10)


def test_answers_become_messages():
    answer = {"predicted_label": [7, 2], "probabilities": [[0.1] * 10, [0.0] * 9 + [1.0]], "model_id": "m"}
    message = predict_response(answer)
    assert list(message.predicted_label) == [7, 2] and message.model_id == "m"
    np.testing.assert_allclose([list(p.values) for p in message.probabilities], answer["probabilities"], rtol=1e-6)


def test_the_model_listing_becomes_a_message():
    listing = {
        "default_model_id": "a",
        "header": "serve_multiplexed_model_id",
        "models": [
            {"model_id": "a", "default": True, "test_accuracy": 0.99, "parameters": 10, "pixel_transform": "none"}
        ],
    }
    message = models_response(listing)
    assert message.default_model_id == "a" and message.metadata_key == "multiplexed_model_id"
    assert message.models[0].model_id == "a" and message.models[0].default and message.models[0].parameters == 10


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.MalformedBodyError, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.UnknownModelError, grpc.StatusCode.NOT_FOUND),
        (errors.UnknownTaskError, grpc.StatusCode.NOT_FOUND),
        (errors.PayloadTooLargeError, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.UnsupportedMediaError, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.ServiceBusyError, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.ServiceUnavailableError, grpc.StatusCode.UNAVAILABLE),
        (errors.ServeAppError, grpc.StatusCode.INTERNAL),
    ],
)
def test_every_error_has_a_grpc_code(error, code):
    assert error("x").grpc_code == code


def test_client_mistakes_are_never_internal_or_retryable():
    client_errors = [e for e in vars(errors).values() if isinstance(e, type) and issubclass(e, errors.ServeAppError)]
    for error in client_errors:
        if error.status < 500:
            assert error.grpc_code in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}, error


def test_the_committed_stubs_are_generated_from_the_proto(tmp_path):
    generated = generate_stubs(tmp_path)
    for path in generated:
        committed = REPO_ROOT / path.relative_to(tmp_path)
        assert path.read_text() == committed.read_text(), (
            f"{path.name} is stale: python -m serve_app.grpc_api --generate"
        )
    assert [p.name for p in generated] == list(STUB_NAMES)


def test_calls_name_the_application_and_optionally_the_model():
    assert call_metadata() == [("application", "mnist")]
    assert call_metadata("mnist-cnn-small") == [("application", "mnist"), ("multiplexed_model_id", "mnist-cnn-small")]
    assert call_metadata(application="other") == [("application", "other")]
