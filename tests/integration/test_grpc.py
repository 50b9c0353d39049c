"""The gRPC API on the real local graph (HAProxy, or Serve's gRPC proxy, in front of the Ingress).

Same validation, models, batching and metrics as the HTTP API; every refusal is a gRPC status with
a message, and none of them harms the service.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from serve_app.config import REPO_ROOT
from serve_app.grpc_api import MODEL_METADATA_KEY, SERVICE_NAME, call_metadata
from serve_app.proto import mnist_pb2, mnist_pb2_grpc

TIMEOUT_S = 120  # the first call may wait for a Classifier replica
#: Every call names the application, as clients should (serve_app.grpc_api.call_metadata).
APP = call_metadata()


@pytest.fixture(scope="module")
def stub(local_serve) -> Iterator[mnist_pb2_grpc.MnistStub]:
    with grpc.insecure_channel(local_serve.grpc_target) as channel:
        yield mnist_pb2_grpc.MnistStub(channel)


def raw_request(images: np.ndarray) -> mnist_pb2.PredictRequest:
    return mnist_pb2.PredictRequest(raw=np.ascontiguousarray(images, dtype=np.uint8).tobytes())


def refusal(call, *args, **kwargs) -> grpc.RpcError:
    kwargs.setdefault("metadata", APP)
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=TIMEOUT_S, **kwargs)
    return caught.value


def test_real_digits_over_grpc_get_their_labels(stub, example_digits):
    images, labels = example_digits
    answer = stub.Predict(raw_request(images), timeout=TIMEOUT_S, metadata=APP)
    assert list(answer.predicted_label) == labels.tolist()
    assert answer.model_id == "mnist-cnn"
    assert len(answer.probabilities) == len(labels)
    for row in answer.probabilities:
        assert len(row.values) == 10 and sum(row.values) == pytest.approx(1.0, abs=1e-4)


def test_a_call_without_metadata_reaches_the_only_application(stub, example_digits):
    """Serve routes a call that names no application to the only one; HAProxy keeps an application
    deleted by an earlier test (test_control's) for some seconds, so this waits that out."""
    images, labels = example_digits
    deadline = time.monotonic() + 90
    answer, stale = None, None
    while answer is None and time.monotonic() < deadline:
        try:
            answer = stub.Predict(raw_request(images[:2]), timeout=TIMEOUT_S)
        except grpc.RpcError as error:
            stale = error
            time.sleep(2)
    assert answer is not None, f"a call without metadata still fails after 90 s: {stale}"
    if stale is not None:  # the only way it may fail meanwhile: Serve asks which application
        assert stale.code() == grpc.StatusCode.NOT_FOUND and "Application metadata" in stale.details(), stale
    assert list(answer.predicted_label) == labels[:2].tolist()


def test_server_reflection_lists_the_service(local_serve):
    """grpcurl and grpcui discover the API through reflection (after the test above, which waits out
    any application HAProxy still counts: reflection calls carry no metadata)."""
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(local_serve.grpc_target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert SERVICE_NAME in list(database.get_services())
        methods = {m.name for m in database.FindFileContainingSymbol(SERVICE_NAME).service[0].method}
    assert methods == {"Predict", "ListModels"}


def test_grpc_and_http_give_the_same_answer(local_serve, stub, example_digits):
    images, _ = example_digits
    over_grpc = stub.Predict(raw_request(images[:3]), timeout=TIMEOUT_S, metadata=APP)
    over_http = local_serve.post("/predict", json={"image": images[:3].tolist()}).json()
    assert list(over_grpc.predicted_label) == over_http["predicted_label"]
    np.testing.assert_allclose([list(r.values) for r in over_grpc.probabilities], over_http["probabilities"], atol=1e-6)


def test_scaled_pixels_answer_as_raw_ones(stub, example_digits):
    images, labels = example_digits
    scaled = mnist_pb2.ScaledPixels(values=(images[:4].astype(np.float32) / 255).ravel().tolist())
    answer = stub.Predict(mnist_pb2.PredictRequest(scaled=scaled), timeout=TIMEOUT_S, metadata=APP)
    assert list(answer.predicted_label) == labels[:4].tolist()


def test_the_metadata_key_chooses_the_model(stub, example_digits):
    images, labels = example_digits
    answer = stub.Predict(raw_request(images[:2]), timeout=TIMEOUT_S, metadata=call_metadata("mnist-cnn-small"))
    assert (MODEL_METADATA_KEY, "mnist-cnn-small") in call_metadata("mnist-cnn-small")
    assert answer.model_id == "mnist-cnn-small"
    assert list(answer.predicted_label) == labels[:2].tolist()


def test_an_unknown_model_is_not_found_and_names_the_known_ones(stub, example_digits):
    images, _ = example_digits
    error = refusal(stub.Predict, raw_request(images[:1]), metadata=call_metadata("mnist-nope"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "mnist-nope" in error.details() and "mnist-cnn-small" in error.details()


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (mnist_pb2.PredictRequest(), "has no pixels"),
        (mnist_pb2.PredictRequest(raw=b""), "'raw' is empty"),
        (mnist_pb2.PredictRequest(raw=bytes(700)), "not a whole number of 28x28 digits"),
        (mnist_pb2.PredictRequest(scaled=mnist_pb2.ScaledPixels(values=[float("nan")] * 784)), "NaN"),
        (mnist_pb2.PredictRequest(scaled=mnist_pb2.ScaledPixels(values=[2.0] * 784)), "must lie in [0, 1]"),
        (mnist_pb2.PredictRequest(raw=bytes(784 * 257)), "exceeds this service's maximum of 256"),
    ],
)
def test_bad_requests_are_invalid_argument_with_a_message(stub, request_, words):
    error = refusal(stub.Predict, request_)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert words in error.details()


def test_bytes_that_are_no_message_are_refused_and_the_service_goes_on(local_serve, stub, example_digits):
    images, labels = example_digits
    with grpc.insecure_channel(local_serve.grpc_target) as channel:
        predict_bytes = channel.unary_unary(f"/{SERVICE_NAME}/Predict")  # no serialiser: raw bytes out
        error = refusal(predict_bytes, b"\xff\xff\xff\xff not a protobuf message")
    assert error.code() != grpc.StatusCode.OK
    assert list(stub.Predict(raw_request(images), timeout=TIMEOUT_S, metadata=APP).predicted_label) == labels.tolist()


def test_an_oversized_message_is_refused_before_it_is_read_and_the_service_goes_on(stub, example_digits):
    images, labels = example_digits
    huge = mnist_pb2.PredictRequest(raw=bytes(17 * 1024 * 1024))  # past the 16 MiB the local run allows
    error = refusal(stub.Predict, huge)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
    assert list(stub.Predict(raw_request(images), timeout=TIMEOUT_S, metadata=APP).predicted_label) == labels.tolist()


def test_an_unknown_method_is_unimplemented(local_serve):
    with grpc.insecure_channel(local_serve.grpc_target) as channel:
        error = refusal(channel.unary_unary(f"/{SERVICE_NAME}/Train"), b"")
    assert error.code() in {grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND}, error


def test_list_models_matches_get_models(local_serve, stub):
    over_grpc = stub.ListModels(mnist_pb2.ListModelsRequest(), timeout=TIMEOUT_S, metadata=APP)
    over_http = local_serve.get("/models").json()
    assert over_grpc.default_model_id == over_http["default_model_id"]
    assert over_grpc.metadata_key == MODEL_METADATA_KEY
    assert [m.model_id for m in over_grpc.models] == [m["model_id"] for m in over_http["models"]]
    assert [m.default for m in over_grpc.models] == [m["default"] for m in over_http["models"]]


def test_concurrent_calls_are_all_answered_in_order(stub, example_digits):
    images, labels = example_digits

    def classify(start: int) -> list[int]:
        picked = [(start + k) % len(images) for k in range(3)]
        answer = stub.Predict(raw_request(images[picked]), timeout=TIMEOUT_S, metadata=APP)
        assert list(answer.predicted_label) == labels[picked].tolist()
        return list(answer.predicted_label)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(classify, range(64)))
    assert len(answers) == 64


def test_grpc_calls_are_counted_like_http_requests(local_serve, stub, example_digits):
    images, _ = example_digits
    ok = ("ray_mnist_requests_total", {"model": "mnist-cnn", "outcome": "200"})
    bad = ("ray_mnist_requests_total", {"model": "mnist-cnn", "outcome": "422"})
    latency = ("ray_mnist_request_latency_ms_count", {"route": f"/{SERVICE_NAME}/Predict"})
    local_serve.settled(ok[0], **ok[1])
    before = [local_serve.scrape(name, **tags) for name, tags in (ok, bad, latency)]
    for _ in range(4):
        stub.Predict(raw_request(images[:1]), timeout=TIMEOUT_S, metadata=APP)
    for _ in range(2):
        refusal(stub.Predict, mnist_pb2.PredictRequest(raw=bytes(10)))
    for (name, tags), start, increase in zip((ok, bad, latency), before, (4, 2, 6), strict=True):
        assert local_serve.wait_for_metric(name, start + increase, **tags) == start + increase, (name, tags)


def test_the_command_line_client_classifies_files_and_reports_refusals(local_serve):
    digits = REPO_ROOT / "examples" / "digits"
    command = [sys.executable, "-m", "serve_app.grpc_client", "--target", local_serve.grpc_target]
    done = subprocess.run(
        [*command, str(digits / "digit-7.png"), str(digits / "digit-3.png")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["predicted_label"] == [7, 3]
    refused = subprocess.run(
        [*command, "--model", "mnist-nope", str(digits / "digit-7.png")], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1 and refused.stderr.startswith("NOT_FOUND: unknown model id 'mnist-nope'")
    listed = subprocess.run([*command, "--list-models"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and json.loads(listed.stdout)["default_model_id"] == "mnist-cnn"
