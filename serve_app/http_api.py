"""The HTTP side of the Ingress: the FastAPI app, its body limit, its error bodies, its OpenAPI schema.

The Ingress deployment (:mod:`serve_app.ingress`) declares its routes on :data:`api`; this module
holds what every route shares:

* **One body limit for every body.** :class:`BodyLimit` counts the bytes of each request as the
  server hands them over and stops at ``max_body_bytes``: a ``Content-Length`` that claims more is
  answered 413 before any byte is read, and a body that streams past the limit (chunked, or a
  lying ``Content-Length``) is cut off there and answered 413, whatever parses it (JSON, ``.npy``,
  multipart). Nothing larger than the limit is ever held in memory.
* **One error body.** Every 4xx and 5xx, the service's own and those of routing (404, 405) and
  of body parsing (malformed multipart), is ``{"detail": ..., "error": ..., "status": ...}``.
* **A schema that tells the truth.** :func:`openapi_schema` states what the validation accepts
  where JSON Schema can say it: 28 rows of 28 pixels, integers 0-255 or numbers in [0, 1], one
  image layout per batch, at most ``max_batch_images`` images, at least one upload.
* **Request metrics** by route (:func:`record_request`), for HTTP and gRPC alike.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.errors import InvalidInputError, MalformedBodyError, PayloadTooLargeError, ServeAppError
from serve_app.grpc_api import SERVICE_NAME
from serve_app.metrics import ingress_metrics
from serve_app.oip import HEADER_LENGTH, OipError
from serve_app.schemas import oip_infer_request_schema, predict_request_schema

#: Until the Ingress sets its own (app arg max_body_bytes), the limit of the Serve config's default.
DEFAULT_MAX_BODY_BYTES = 16 * 2**20

api = FastAPI(
    title="mnist-serve",
    summary="MNIST digit classification served by Ray Serve",
    description=(
        "A composed Ray Serve graph: this FastAPI ingress validates requests, a Preprocessor "
        "deployment applies the torchvision transforms, a Classifier deployment runs the model. "
        "Every error has a JSON body `{detail, error, status}`."
    ),
    version="0.1.0",
)


def configure(max_body_bytes: int, max_batch_images: int) -> None:
    """Set the limits of this replica's app (its Ingress's args); the schema follows them."""
    api.state.max_body_bytes = max_body_bytes
    api.state.max_batch_images = max_batch_images
    api.openapi_schema = None


# --- the body limit -------------------------------------------------------------------------------


def _too_large_body(declared: str | int, limit: int) -> dict[str, object]:
    return PayloadTooLargeError(f"body of {declared} bytes exceeds the limit of {limit} bytes").to_body()


class BodyLimit:
    """ASGI middleware: no request body past the app's ``state.max_body_bytes`` is read; 413 instead.

    A declared ``Content-Length`` over the limit gets the 413 at once. A body that streams past
    it is cut off: the app then sees the client as gone (``http.disconnect``), whatever it was
    parsing stops, and whatever it would have answered is replaced by the 413.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection's request, its body held to the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = int(scope["app"].state.max_body_bytes)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            if declared.isdigit():
                await JSONResponse(_too_large_body(int(declared), limit), status_code=413)(scope, receive, send)
            else:
                body = MalformedBodyError(f"Content-Length {declared.decode(errors='replace')!r} is not a number")
                await JSONResponse(body.to_body(), status_code=400)(scope, receive, send)
            return
        received = 0
        overflow = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, overflow
            if overflow:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    overflow = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflow:
                if not started:
                    started = True
                    response = JSONResponse(_too_large_body(f"more than {limit}", limit), status_code=413)
                    await response(scope, receive, send)
                return  # the app's own answer to a body it never got whole
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not overflow:
                raise
            if not started:
                await guarded_send({"type": "http.response.start", "status": 413, "headers": []})


# --- one error body -------------------------------------------------------------------------------

#: The ``error`` of an HTTP exception raised by routing or body parsing, by status.
HTTP_EXCEPTION_ERRORS = {
    HTTPStatus.BAD_REQUEST: "MalformedBodyError",
    HTTPStatus.NOT_FOUND: "RouteNotFoundError",
    HTTPStatus.METHOD_NOT_ALLOWED: "MethodNotAllowedError",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "PayloadTooLargeError",
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: "UnsupportedMediaError",
    HTTPStatus.UNPROCESSABLE_ENTITY: "InvalidInputError",
}


def http_exception_body(status: int, detail: object) -> dict[str, object]:
    """The service's error body for an HTTP exception of Starlette or FastAPI."""
    text = detail if isinstance(detail, str) else str(detail)
    if status == HTTPStatus.BAD_REQUEST and text in ("There was an error parsing the body", "Invalid multipart data."):
        text = "malformed body: not valid multipart/form-data (send PNG or JPEG files in the 'files' field)"
    elif status == HTTPStatus.NOT_FOUND and text == "Not Found":
        text = "no such route; see /docs for the API"
    elif status == HTTPStatus.METHOD_NOT_ALLOWED and text == "Method Not Allowed":
        text = "this route does not take that method; see /docs for the API"
    return {"detail": text, "error": HTTP_EXCEPTION_ERRORS.get(HTTPStatus(status), "HTTPError"), "status": status}


async def _serve_app_error(_: Request, exc: ServeAppError) -> JSONResponse:
    return JSONResponse(exc.to_body(), status_code=int(exc.status), headers=exc.headers)


async def _http_exception(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    body = http_exception_body(exc.status_code, exc.detail)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _request_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg')}" for error in exc.errors()
    )
    return await _serve_app_error(request, InvalidInputError(problems or "invalid request"))


async def _oip_error(_: Request, exc: OipError) -> JSONResponse:
    return JSONResponse(exc.to_body(), status_code=exc.status, headers=exc.headers)


def harden(app: FastAPI, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
    """Give an app the body limit and the one error body (every error, routing's and parsing's too)."""
    app.state.max_body_bytes = max_body_bytes
    app.add_middleware(BodyLimit)
    app.add_exception_handler(ServeAppError, _serve_app_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_exception)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _request_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(OipError, _oip_error)  # type: ignore[arg-type]


harden(api)
api.state.max_batch_images = 256


# --- metrics --------------------------------------------------------------------------------------

#: The gRPC methods' routes in the metrics: their full method paths.
GRPC_PREDICT_ROUTE = f"/{SERVICE_NAME}/Predict"
GRPC_LIST_MODELS_ROUTE = f"/{SERVICE_NAME}/ListModels"
GRPC_OIP_INFER_ROUTE = "/inference.GRPCInferenceService/ModelInfer"
GRPC_OIP_OTHER_ROUTE = "/inference.GRPCInferenceService/metadata"
#: HTTP routes recorded by name in the latency metric; anything else is "other" (bounded cardinality).
METRIC_ROUTES = {"/predict", "/", "/predict/image", "/tasks", "/models", "/healthz"}
#: The Open Inference Protocol's routes, by kind (the model name is a tag of its own).
OIP_INFER_ROUTE = "/v2/models/{model}/infer"
OIP_OTHER_ROUTE = "/v2 (metadata and health)"
#: Routes that classify (counted in mnist_requests_total by model and status).
CLASSIFYING_ROUTES = {
    "/predict",
    "/",
    "/predict/image",
    "/tasks",
    GRPC_PREDICT_ROUTE,
    OIP_INFER_ROUTE,
    GRPC_OIP_INFER_ROUTE,
}


def metric_route(path: str) -> str:
    """The route label of a request path: a known route, ``/tasks/{id}``, an OIP route, or ``other``."""
    if path in METRIC_ROUTES:
        return path
    if path.startswith("/tasks/"):
        return "/tasks/{id}"
    if path == "/v2" or path.startswith("/v2/"):
        return OIP_INFER_ROUTE if path.endswith("/infer") else OIP_OTHER_ROUTE
    return "other"


def record_request(route: str, started: float, outcome: int, model: str | None) -> None:
    """Record one request's latency by route and, for a classifying request (``model`` given), its outcome.

    ``outcome`` is the HTTP status; a gRPC request records its HTTP equivalent, so one alert on
    5xx covers both APIs.
    """
    metrics = ingress_metrics()
    metrics.request_latency_ms.observe((time.perf_counter() - started) * 1000, tags={"route": route})
    if model is not None and route in CLASSIFYING_ROUTES:
        metrics.requests.inc(tags={"model": model, "outcome": str(outcome)})


@api.middleware("http")
async def _record_request_metrics(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    model = getattr(request.state, "model_id", "none") if request.method == "POST" else None
    record_request(metric_route(request.url.path), started, response.status_code, model)
    return response


# --- the OpenAPI schema -----------------------------------------------------------------------------

#: The JSON and ``.npy`` bodies of the classifying routes, documented in :func:`openapi_schema`.
JSON_BODY_ROUTES = (("/predict", "post"), ("/", "post"), ("/tasks", "post"))
NPY_BODY_SCHEMA = {
    "type": "string",
    "format": "binary",
    "description": (
        "numpy.save() of the image batch, (N, 28, 28), (N, 1, 28, 28) or (N, 28, 28, 1); uint8 = raw 0-255, "
        "a float dtype = [0, 1] (override with the pixel_scale query parameter). The header must describe "
        "exactly the bytes that follow it, and N at most max_batch_images."
    ),
}


#: The OIP inference operations, whose request bodies :func:`openapi_schema` fills in.
OIP_INFER_PATHS = ("/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}/infer")
#: ``openapi_extra`` of the OIP inference routes (which read the raw body): the binary extension's header.
OIP_INFER_REQUEST_DOC: dict[str, Any] = {
    "parameters": [
        {
            "name": HEADER_LENGTH,
            "in": "header",
            "required": False,
            "schema": {"type": "integer", "minimum": 0},
            "description": (
                "The binary tensor data extension: the length of the JSON part; raw tensors follow it "
                "(each input with parameters.binary_data_size). Without it the whole body is JSON."
            ),
        }
    ],
}
OIP_BINARY_BODY_SCHEMA = {
    "type": "string",
    "format": "binary",
    "description": (
        f"The binary tensor data extension: {HEADER_LENGTH} bytes of JSON (the request, its input with "
        "parameters.binary_data_size instead of data), then the input's raw little-endian bytes (FP32 or UINT8)."
    ),
}

OIP_BINARY_ANSWER_SCHEMA = {
    "type": "string",
    "format": "binary",
    "description": (
        f"With outputs asked for in binary: {HEADER_LENGTH} (a response header) bytes of JSON, the answer "
        "with parameters.binary_data_size on those outputs, then their raw little-endian bytes in output order."
    ),
}


def _oip_request_body(max_batch_images: int, limit_note: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": "An inference request: JSON, or JSON and raw tensors (the binary tensor data extension)."
        + limit_note,
        "content": {
            "application/json": {"schema": oip_infer_request_schema(max_batch_images)},
            "application/octet-stream": {"schema": OIP_BINARY_BODY_SCHEMA},
        },
    }


def openapi_schema(app: FastAPI, max_batch_images: int, max_body_bytes: int) -> dict[str, Any]:
    """The app's OpenAPI document with the request bodies as strict as the validation."""
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, description=app.description, routes=app.routes
    )
    body = predict_request_schema(max_batch_images)
    limit_note = f" Bodies larger than {max_body_bytes} bytes are answered 413."
    for path, method in JSON_BODY_ROUTES:
        operation = schema["paths"][path][method]
        operation["requestBody"] = {
            "required": True,
            "description": "A JSON batch, or the same batch as a .npy array." + limit_note,
            "content": {
                "application/json": {"schema": copy.deepcopy(body)},
                "application/x-npy": {"schema": NPY_BODY_SCHEMA},
            },
        }
    upload = schema["paths"]["/predict/image"]["post"]["requestBody"]
    for content in upload["content"].values():
        ref = content["schema"].get("$ref")
        target = schema["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else content["schema"]
        files = target["properties"]["files"]
        files.update(minItems=1, maxItems=max_batch_images)
        files["description"] = f"1 to {max_batch_images} PNG or JPEG digits; larger images are resized to 28x28."
    upload["description"] = "Multipart uploads of one or more digits." + limit_note
    for path in OIP_INFER_PATHS:
        operation = schema["paths"][path]["post"]
        operation["requestBody"] = _oip_request_body(max_batch_images, limit_note)
        answer = operation["responses"]["200"]
        answer["content"]["application/octet-stream"] = {"schema": OIP_BINARY_ANSWER_SCHEMA}
        answer["headers"] = {
            HEADER_LENGTH: {
                "schema": {"type": "integer"},
                "description": "Sent with an octet-stream answer: the length of its JSON part.",
            }
        }
    return schema


def _openapi() -> dict[str, Any]:
    if api.openapi_schema is None:
        api.openapi_schema = openapi_schema(api, int(api.state.max_batch_images), int(api.state.max_body_bytes))
    return api.openapi_schema


api.openapi = _openapi  # type: ignore[method-assign]
