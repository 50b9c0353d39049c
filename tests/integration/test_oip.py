"""The Open Inference Protocol (KServe V2) on the real local graph, through standard clients.

Triton's own HTTP client (``tritonclient.http``) drives the HTTP side: health, metadata, Triton's
model configuration, and inference with JSON data and with the binary tensor data extension, for
every model of the store. The gRPC side is driven through ``inference.GRPCInferenceService``
(serve_app/proto/inference.proto, wire-compatible with KServe's and Triton's), without the ``application``
metadata a Triton client never sends. The answers are the ``/predict`` answers for the same pixels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from serve_app.http_api import GRPC_OIP_INFER_ROUTE, OIP_INFER_ROUTE
from serve_app.oip import HEADER_LENGTH
from serve_app.proto import inference_pb2, inference_pb2_grpc

TIMEOUT_S = 120  # the first call of a model may wait for its load on a Classifier replica


@pytest.fixture(scope="module")
def triton(local_serve) -> Iterator[triton_http.InferenceServerClient]:
    client = triton_http.InferenceServerClient(local_serve.base_url.removeprefix("http://"), network_timeout=TIMEOUT_S)
    yield client
    client.close()


@pytest.fixture(scope="module")
def oip_stub(local_serve) -> Iterator[inference_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(local_serve.grpc_target) as channel:
        yield inference_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def model_ids(local_serve) -> list[str]:
    return [model["model_id"] for model in local_serve.get("/models").json()["models"]]


def predict_labels(local_serve, images: np.ndarray, model_id: str) -> list[int]:
    response = local_serve.post(
        "/predict", json={"image": images.tolist()}, headers={"serve_multiplexed_model_id": model_id}
    )
    assert response.status_code == 200, response.text
    return response.json()["predicted_label"]


def triton_input(images: np.ndarray, binary: bool) -> triton_http.InferInput:
    """The digits as the ``image`` input: uint8 as UINT8 [N, 28, 28], floats as FP32 [N, 1, 28, 28]."""
    datatype = "UINT8" if images.dtype == np.uint8 else "FP32"
    tensor = triton_http.InferInput("image", list(images.shape), datatype)
    tensor.set_data_from_numpy(images, binary_data=binary)
    return tensor


def test_health_and_metadata_through_tritons_client(triton, model_ids):
    assert triton.is_server_live() and triton.is_server_ready()
    metadata = triton.get_server_metadata()
    assert metadata["name"] == "mnist-serve" and set(metadata["extensions"]) >= {"binary_tensor_data"}
    for model_id in model_ids:
        assert triton.is_model_ready(model_id) and triton.is_model_ready(model_id, "1")
        model = triton.get_model_metadata(model_id)
        assert model["name"] == model_id and model["versions"] == ["1"]
        assert model["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
        assert [output["name"] for output in model["outputs"]] == ["probabilities", "label"]
        config = triton.get_model_config(model_id)
        assert config["max_batch_size"] == 256 and config["input"][0]["dims"] == [1, 28, 28]
    assert not triton.is_model_ready("mnist-nope")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("layout", ["uint8", "float"])
def test_every_model_answers_as_predict_does(local_serve, triton, model_ids, example_digits, binary, layout):
    images, labels = example_digits
    tensor = images if layout == "uint8" else (images[:, None] / 255.0).astype(np.float32)
    outputs = [triton_http.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "label")]
    for model_id in model_ids:
        result = triton.infer(model_id, [triton_input(tensor, binary)], outputs=outputs, request_id=f"{model_id}-1")
        answer = result.get_response()
        assert answer["model_name"] == model_id and answer["model_version"] == "1" and answer["id"] == f"{model_id}-1"
        predicted = result.as_numpy("label")
        assert predicted.dtype == np.int64 and predicted.tolist() == predict_labels(local_serve, images, model_id)
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (len(images), 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
        assert (probabilities.argmax(axis=1) == predicted).all()
    # the shipped digits are real: the default model gets them right
    default = triton.infer(model_ids[0], [triton_input(tensor, binary)], outputs=outputs)
    assert default.as_numpy("label").tolist() == labels.tolist()


def test_a_versioned_route_and_one_output_in_binary(local_serve, example_digits):
    images, labels = example_digits
    raw = images[:3].tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "UINT8",
                    "shape": [3, 28, 28],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
        }
    ).encode()
    response = local_serve.post(
        "/v2/models/mnist-cnn/versions/1/infer",
        data=header + raw,
        headers={HEADER_LENGTH: str(len(header)), "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    json_length = int(response.headers[HEADER_LENGTH])
    answer = json.loads(response.content[:json_length])
    assert answer["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [3], "parameters": {"binary_data_size": 24}}
    ]
    assert np.frombuffer(response.content[json_length:], dtype="<i8").tolist() == labels[:3].tolist()


def image_tensor(datatype: str, shape: list[int], data: list[float]) -> dict:
    return {"name": "image", "datatype": datatype, "shape": shape, "data": data}


ZERO_DIGIT = image_tensor("FP32", [1, 28, 28], [0.0] * 784)
REFUSALS = [
    ("/v2/models/mnist-nope/infer", {"inputs": []}, {}, 404, "unknown model id 'mnist-nope'"),
    ("/v2/models/mnist-cnn/versions/2/infer", {"inputs": []}, {}, 404, "version '2' is unknown"),
    ("/v2/models/mnist-cnn/infer", {"inputs": [image_tensor("FP64", [1, 28, 28], [0] * 784)]}, {}, 400, "'FP64'"),
    (
        "/v2/models/mnist-cnn/infer",
        {"inputs": [image_tensor("FP32", [1, 28, 28], [0.5] * 783)]},
        {},
        400,
        "data has 783",
    ),
    ("/v2/models/mnist-cnn/infer", {"inputs": [image_tensor("FP32", [1, 28, 28], [2.0] * 784)]}, {}, 400, "\\[0, 1\\]"),
    ("/v2/models/mnist-cnn/infer", {"inputs": [image_tensor("UINT8", [257, 28, 28], [0])]}, {}, 413, "maximum of 256"),
    (
        "/v2/models/mnist-cnn/infer",
        {"inputs": [ZERO_DIGIT], "parameters": {"priority": 2}},
        {},
        400,
        "'priority' is not",
    ),
    ("/v2/models/mnist-cnn/infer", "not json", {}, 400, "malformed JSON"),
    ("/v2/models/mnist-cnn/infer", "[[[[", {"Content-Type": "application/xml"}, 415, "needs the Inference-Header"),
    ("/v2/models/mnist-cnn/infer", {"inputs": []}, {HEADER_LENGTH: "999999"}, 400, "body has only"),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "message"), REFUSALS, ids=range(len(REFUSALS)))
def test_bad_requests_get_the_protocols_error_body(local_serve, path, body, headers, status, message):
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    response = local_serve.post(path, data=data, headers={"Content-Type": "application/json", **headers})
    assert response.status_code == status, response.text
    answer = response.json()
    assert list(answer) == ["error"]
    assert re.search(message, answer["error"]), answer


def test_tritons_client_reports_a_refusal_with_its_message(triton):
    zeros = np.zeros((1, 1, 28, 28), dtype=np.float32)
    with pytest.raises(InferenceServerException, match="unknown model id 'mnist-nope'") as refused:
        triton.infer("mnist-nope", [triton_input(zeros, True)])
    assert refused.value.status() == "404"


def grpc_infer_request(model_id: str, images: np.ndarray, raw: bool = True) -> inference_pb2.ModelInferRequest:
    message = inference_pb2.ModelInferRequest(model_name=model_id, id="g-1")
    tensor = message.inputs.add(name="image", datatype="UINT8", shape=list(images.shape))
    if raw:
        message.raw_input_contents.append(images.tobytes())
    else:
        tensor.contents.uint_contents.extend(images.ravel().tolist())
    return message


def test_grpc_health_metadata_and_config(oip_stub, model_ids):
    assert oip_stub.ServerLive(inference_pb2.ServerLiveRequest(), timeout=TIMEOUT_S).live
    assert oip_stub.ServerReady(inference_pb2.ServerReadyRequest(), timeout=TIMEOUT_S).ready
    assert oip_stub.ServerMetadata(inference_pb2.ServerMetadataRequest(), timeout=TIMEOUT_S).name == "mnist-serve"
    for model_id in model_ids:
        assert oip_stub.ModelReady(inference_pb2.ModelReadyRequest(name=model_id), timeout=TIMEOUT_S).ready
        metadata = oip_stub.ModelMetadata(inference_pb2.ModelMetadataRequest(name=model_id), timeout=TIMEOUT_S)
        assert [tensor.name for tensor in metadata.outputs] == ["probabilities", "label"]
        config = oip_stub.ModelConfig(inference_pb2.ModelConfigRequest(name=model_id), timeout=TIMEOUT_S).config
        assert config.name == model_id and config.max_batch_size == 256


@pytest.mark.parametrize("raw", [True, False], ids=["raw_input_contents", "contents"])
def test_grpc_inference_for_every_model_answers_as_predict_does(local_serve, oip_stub, model_ids, example_digits, raw):
    images, _ = example_digits
    for model_id in model_ids:
        answer = oip_stub.ModelInfer(grpc_infer_request(model_id, images, raw), timeout=TIMEOUT_S)
        assert answer.model_name == model_id and answer.id == "g-1"
        assert [output.name for output in answer.outputs] == ["probabilities", "label"]
        labels = np.frombuffer(answer.raw_output_contents[1], dtype="<i8").tolist()
        assert labels == predict_labels(local_serve, images, model_id)


GRPC_REFUSALS = {
    "unknown-model": (inference_pb2.ModelInferRequest(model_name="mnist-nope"), "NOT_FOUND", "unknown model id"),
    "unknown-version": (
        inference_pb2.ModelInferRequest(model_name="mnist-cnn", model_version="7"),
        "NOT_FOUND",
        "version '7'",
    ),
    "no-input": (inference_pb2.ModelInferRequest(model_name="mnist-cnn"), "INVALID_ARGUMENT", "exactly one tensor"),
    "bad-shape": (
        grpc_infer_request("mnist-cnn", np.zeros((2, 28, 27), np.uint8)),
        "INVALID_ARGUMENT",
        "is not \\[N, 1, 28, 28\\]",
    ),
    # 413's gRPC code, as for the project's own gRPC API (serve_app/errors.py)
    "too-many": (grpc_infer_request("mnist-cnn", np.zeros((300, 28, 28), np.uint8)), "INVALID_ARGUMENT", "of 256"),
}


@pytest.mark.parametrize(("message", "code", "text"), GRPC_REFUSALS.values(), ids=GRPC_REFUSALS.keys())
def test_grpc_refusals_carry_the_protocols_codes(oip_stub, message, code, text):
    with pytest.raises(grpc.RpcError) as refused:
        oip_stub.ModelInfer(message, timeout=TIMEOUT_S)
    assert refused.value.code().name == code
    assert re.search(text, refused.value.details()), refused.value.details()


def test_oip_requests_are_counted_like_the_others(local_serve, triton, oip_stub, example_digits):
    images, _ = example_digits
    ok = ("ray_mnist_requests_total", {"model": "mnist-cnn", "outcome": "200"})
    http_latency = ("ray_mnist_request_latency_ms_count", {"route": OIP_INFER_ROUTE})
    grpc_latency = ("ray_mnist_request_latency_ms_count", {"route": GRPC_OIP_INFER_ROUTE})
    # One request of each kind first, so every series exists before it is read (on a fresh Ray the
    # first export comes late, and a series that is not exported yet reads as 0 twice).
    triton.infer("mnist-cnn", [triton_input(images[:1], True)])
    oip_stub.ModelInfer(grpc_infer_request("mnist-cnn", images[:1]), timeout=TIMEOUT_S)
    for name, tags in (ok, http_latency, grpc_latency):
        assert local_serve.wait_for_metric(name, 1, **tags) >= 1, (name, tags)
    before = [local_serve.settled(name, **tags) for name, tags in (ok, http_latency, grpc_latency)]
    for _ in range(3):
        triton.infer("mnist-cnn", [triton_input(images[:1], True)])
    for _ in range(2):
        oip_stub.ModelInfer(grpc_infer_request("mnist-cnn", images[:1]), timeout=TIMEOUT_S)
    for (name, tags), start, increase in zip((ok, http_latency, grpc_latency), before, (5, 3, 2), strict=True):
        assert local_serve.wait_for_metric(name, start + increase, **tags) == start + increase, (name, tags)
