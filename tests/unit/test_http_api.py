"""The HTTP hardening every route shares: the body limit, one error body, a truthful schema."""

from __future__ import annotations

import jsonschema
import pytest
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.testclient import TestClient

from serve_app.errors import InvalidInputError
from serve_app.http_api import api, harden, openapi_schema
from serve_app.ingress import Ingress  # noqa: F401  (binds the routes on api to the deployment)
from serve_app.schemas import predict_request_schema

LIMIT = 1000


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    harden(app, max_body_bytes=LIMIT)

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"received": len(await request.body())}

    @app.post("/upload")
    async def upload(files: list[UploadFile] = File(...)) -> dict:
        return {"sizes": [len(await f.read()) for f in files]}

    @app.get("/refuse")
    async def refuse() -> dict:
        raise InvalidInputError("no")

    return TestClient(app, raise_server_exceptions=False)


def assert_error(response, status: int, error: str) -> dict:
    body = response.json()
    assert response.status_code == status and body["status"] == status and body["error"] == error, body
    assert response.headers["content-type"] == "application/json" and body["detail"]
    return body


def test_a_body_within_the_limit_is_read(client):
    assert client.post("/echo", content=b"x" * LIMIT).json() == {"received": LIMIT}


def test_a_declared_length_over_the_limit_is_413_at_once(client):
    body = assert_error(client.post("/echo", content=b"x" * (LIMIT + 1)), 413, "PayloadTooLargeError")
    assert f"limit of {LIMIT} bytes" in body["detail"]


def test_a_chunked_body_is_cut_off_at_the_limit(client):
    chunks_sent = []

    def chunks():
        for _ in range(100):  # 100 KB offered; the app stops reading after about 1 KB
            chunks_sent.append(1)
            yield b"x" * 1024

    assert_error(client.post("/echo", content=chunks()), 413, "PayloadTooLargeError")


def test_a_multipart_body_past_the_limit_is_413_not_a_parse_error(client):
    files = [("files", ("a.png", b"x" * (2 * LIMIT), "image/png"))]
    request = client.build_request("POST", "/upload", files=files)
    request.headers.pop("content-length")  # streamed, as chunked
    assert_error(client.send(request), 413, "PayloadTooLargeError")


def test_a_content_length_that_is_not_a_number_is_400(client):
    response = client.post("/echo", content=b"{}", headers={"content-length": "lots"})
    assert_error(response, 400, "MalformedBodyError")


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [("GET", "/nowhere", 404, "RouteNotFoundError"), ("DELETE", "/echo", 405, "MethodNotAllowedError")],
)
def test_routing_errors_have_the_services_body(client, method, path, status, error):
    response = client.request(method, path)
    assert_error(response, status, error)
    if status == 405:
        assert response.headers["allow"] == "POST"


def test_malformed_multipart_has_the_services_body(client):
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    body = assert_error(client.post("/upload", content=b"garbage", headers=headers), 400, "MalformedBodyError")
    assert "multipart" in body["detail"]


def test_missing_files_and_service_errors_keep_their_bodies(client):
    assert_error(client.post("/upload", data={}), 422, "InvalidInputError")
    assert_error(client.get("/refuse"), 422, "InvalidInputError")


def test_the_apps_schema_carries_the_strict_bodies_and_the_limits():
    schema = openapi_schema(api, max_batch_images=8, max_body_bytes=2048)
    for path in ("/predict", "/", "/tasks"):
        body = schema["paths"][path]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"] == predict_request_schema(8)
        assert "application/x-npy" in body["content"] and "2048 bytes" in body["description"]
    upload = schema["paths"]["/predict/image"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    ref = upload["$ref"].rsplit("/", 1)[1]
    files = schema["components"]["schemas"][ref]["properties"]["files"]
    assert files["minItems"] == 1 and files["maxItems"] == 8
    jsonschema.Draft202012Validator.check_schema(predict_request_schema(8))
