"""Every endpoint and every bad input over real HTTP, through the whole graph."""

import json
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image

from serve_app.training.examples import EXAMPLES_DIR
from tests.support.payloads import image_bytes, npy_bytes

DIGIT = json.loads((EXAMPLES_DIR / "digit.json").read_text())


def test_tutorial_float_batch_on_root(local_serve):
    # The tutorial's first call, verbatim apart from the base URL.
    images = np.random.rand(2, 1, 28, 28).tolist()
    response = requests.post(local_serve.base_url + "/", json={"image": images}, timeout=60)
    labels = response.json()["predicted_label"]
    assert response.status_code == 200
    assert len(labels) == 2
    assert all(isinstance(label, int) and 0 <= label <= 9 for label in labels)


def test_tutorial_float_batch_on_predict(local_serve):
    images = np.random.rand(2, 1, 28, 28).tolist()
    response = requests.post(local_serve.base_url + "/predict", json={"image": images}, timeout=60)
    assert response.status_code == 200
    assert len(response.json()["predicted_label"]) == 2


def test_ten_raw_uint8_digits_on_root_are_classified(local_serve, example_digits):
    images, labels = example_digits
    response = local_serve.post("/", json={"image": images.tolist()})
    assert response.status_code == 200
    assert response.json()["predicted_label"] == labels.tolist()


def test_predict_answers_labels_probabilities_and_model_id(local_serve):
    body = local_serve.post("/predict", json=DIGIT).json()
    assert body["predicted_label"] == [7]
    assert body["model_id"] == "mnist-cnn"
    probabilities = np.asarray(body["probabilities"])
    assert probabilities.shape == (1, 10)
    assert abs(probabilities.sum() - 1) < 1e-4
    assert probabilities[0].argmax() == 7


def test_unit_scaled_digits_give_the_same_answer(local_serve, example_digits):
    images, labels = example_digits
    unit = (images[:, None] / 255.0).tolist()
    body = local_serve.post("/predict", json={"image": unit}).json()
    assert body["predicted_label"] == labels.tolist()


def test_image_upload_of_several_pngs(local_serve):
    files = [
        ("files", (f"digit-{d}.png", (EXAMPLES_DIR / f"digit-{d}.png").read_bytes(), "image/png")) for d in (3, 9, 0)
    ]
    response = local_serve.post("/predict/image", files=files)
    assert response.status_code == 200
    assert response.json()["predicted_label"] == [3, 9, 0]


def test_image_upload_of_a_jpeg(local_serve, example_digits):
    images, _ = example_digits
    jpeg = image_bytes(Image.fromarray(images[4]).resize((112, 112)), "JPEG", quality=95)
    response = local_serve.post("/predict/image", files={"files": ("four.jpg", jpeg, "image/jpeg")})
    assert response.status_code == 200
    assert response.json()["predicted_label"] == [4]


def test_healthz(local_serve):
    body = local_serve.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["model_id"] == "mnist-cnn"


def test_openapi_docs_describe_the_input_contract(local_serve):
    assert local_serve.get("/docs").status_code == 200
    spec = local_serve.get("/openapi.json").json()
    for path in ("/predict", "/", "/predict/image", "/healthz"):
        assert path in spec["paths"]
    body_schema = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    variants = body_schema["anyOf"]
    assert all("pixel_scale" in v["properties"] and "image" in v["required"] for v in variants)
    limit = local_serve.serve_config["applications"][0]["args"]["max_batch_images"]
    assert {b["maxItems"] for v in variants for b in v["properties"]["image"]["anyOf"]} == {limit}
    assert set(spec["paths"]["/predict"]["post"]["responses"]) >= {"200", "400", "413", "422"}


ZERO = [[0] * 28] * 28
BAD_JSON_REQUESTS = [
    pytest.param({"data": b"{not json"}, 400, "malformed JSON", id="malformed-json"),
    pytest.param({"data": b""}, 400, "empty request body", id="empty-body"),
    pytest.param({"json": {"image": []}}, 422, "empty batch", id="empty-batch"),
    pytest.param({"json": {"image": [[[0] * 27] * 28]}}, 422, "shape", id="wrong-shape"),
    pytest.param({"json": {"image": [ZERO, [[0] * 28] * 3]}}, 422, "ragged", id="ragged"),
    pytest.param({"json": {"image": [[["x"] * 28] * 28]}}, 422, "must be numbers", id="strings"),
    pytest.param({"json": {"image": [[[999] * 28] * 28]}}, 422, "\\[0, 255\\]", id="out-of-range"),
    pytest.param({"json": {"image": [[[-0.5] * 28] * 28]}}, 422, "\\[0, 1\\]", id="negative-float"),
    pytest.param({"data": json.dumps({"image": [[[float("nan")] * 28] * 28]})}, 422, "NaN", id="nan"),
    pytest.param({"data": json.dumps({"image": [[[float("inf")] * 28] * 28]})}, 422, "infinity", id="inf"),
    pytest.param({"json": {"image": "abc"}}, 422, "list of images", id="image-is-string"),
    pytest.param({"json": {"images": [ZERO]}}, 422, "no 'image' field", id="missing-field"),
    pytest.param({"json": [ZERO]}, 422, "JSON object", id="top-level-list"),
    pytest.param({"json": {"image": [ZERO], "pixel_scale": "bits"}}, 422, "pixel_scale", id="bad-scale"),
    pytest.param({"json": {"image": [ZERO] * 257}}, 413, "maximum of 256", id="oversized-batch"),
    pytest.param({"data": b"<a/>", "headers": {"Content-Type": "application/xml"}}, 415, "application/json", id="xml"),
    pytest.param({"data": b'{"image": ' + b"[" * 2_000 + b"]" * 2_000 + b"}"}, 400, "nested too deeply", id="nested"),
    pytest.param(
        {"data": b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"}, 400, "nested too deeply", id="nested-100k"
    ),
    pytest.param(
        {
            "data": b"\x93NUMPY\x01\x00v\x00{'descr': '|u1', 'fortran_order': False, 'shape': (1000000, 1000, 1000), }"
            + b" " * 43
            + b"\n"
            + b"\0" * 100,
            "headers": {"Content-Type": "application/x-npy"},
        },
        400,
        "declares shape",
        id="npy-claims-a-trillion",
    ),
]


@pytest.mark.parametrize(("kwargs", "status", "message"), BAD_JSON_REQUESTS)
@pytest.mark.parametrize("path", ["/predict", "/"])
def test_bad_json_input_is_a_clear_4xx(local_serve, path, kwargs, status, message):
    response = local_serve.post(path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status
    assert body["error"].endswith("Error")
    assert re.search(message, body["detail"]), body["detail"]


def test_a_chunked_body_past_the_limit_is_cut_off_with_a_413(local_serve, example_digits):
    limit = local_serve.serve_config["applications"][0]["args"]["max_body_bytes"]

    def chunks():
        yield b'{"image": ['
        for _ in range(2 * limit // 2**20):
            yield b"0," * 2**19

    response = requests.post(local_serve.base_url + "/predict", data=chunks(), timeout=120)
    assert response.status_code == 413 and response.json()["error"] == "PayloadTooLargeError"
    images, labels = example_digits
    assert local_serve.post("/predict", json={"image": images.tolist()}).json()["predicted_label"] == labels.tolist()


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [("GET", "/nowhere", 404, "RouteNotFoundError"), ("DELETE", "/predict", 405, "MethodNotAllowedError")],
)
def test_routing_errors_have_the_services_error_body(local_serve, method, path, status, error):
    response = requests.request(method, local_serve.base_url + path, timeout=30)
    assert response.status_code == status
    assert response.json() | {"detail": "?"} == {"detail": "?", "error": error, "status": status}


def test_oversized_body_is_a_413(local_serve):
    limit = local_serve.serve_config["applications"][0]["args"]["max_body_bytes"]
    response = local_serve.post("/predict", data=b" " * (limit + 1), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["detail"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param([("files", ("notes.txt", b"hello", "text/plain"))], "not a readable PNG or JPEG", id="text"),
        pytest.param(
            [("files", ("cut.png", (EXAMPLES_DIR / "digit-1.png").read_bytes()[:40], "image/png"))],
            "not a readable",
            id="truncated-png",
        ),
        pytest.param(None, "files", id="no-files"),
    ],
)
def test_bad_uploads_are_a_422(local_serve, files, message):
    response = local_serve.post("/predict/image", files=files) if files else local_serve.post("/predict/image")
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_bad_requests_never_restart_a_replica(local_serve, example_digits):
    before = local_serve.replica_pids()
    for body in ({"image": [[[float("nan")] * 28] * 28]}, {"image": [[0] * 5]}, {"image": [ZERO] * 300}):
        assert 400 <= local_serve.post("/predict", data=json.dumps(body)).status_code < 500
    local_serve.post("/predict", data=b"\x00\xff garbage")
    local_serve.post("/predict/image", files={"files": ("x.png", b"\x89PNG broken", "image/png")})
    images, labels = example_digits
    assert local_serve.post("/predict", json={"image": images.tolist()}).json()["predicted_label"] == labels.tolist()
    assert local_serve.replica_pids() == before


def test_concurrent_requests_all_succeed(local_serve, example_digits):
    images, labels = example_digits

    def classify(index: int) -> int:
        response = local_serve.post("/predict", json={"image": [images[index % 10].tolist()]})
        return response.json()["predicted_label"][0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(classify, range(64)))
    assert answers == [int(labels[i % 10]) for i in range(64)]


def test_npy_body_for_bulk_clients(local_serve, mnist_test):
    headers = {"Content-Type": "application/x-npy"}
    response = local_serve.post("/predict", data=npy_bytes(mnist_test.images[:64]), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["predicted_label"] == mnist_test.labels[:64].tolist()
    bad = local_serve.post("/predict", data=b"\x93NUMPY broken", headers=headers)
    assert bad.status_code == 400 and "not a .npy array" in bad.json()["detail"]
    spec = local_serve.get("/openapi.json").json()
    assert "application/x-npy" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]
