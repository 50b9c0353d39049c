"""The HTTP side of the Ingress: the FastAPI app, its routes, body limit, error bodies and OpenAPI schema.

HTTP (port 8000), the routes of :class:`HttpRoutes`:

* ``POST /predict``        JSON batch -> labels, probabilities, model id
* ``POST /``               the tutorial's request shape, same answer
* ``POST /predict/image``  PNG/JPEG upload of one or more digits
* ``POST /tasks``          the same bodies, answered 202 with a task id (asynchronous)
* ``GET  /tasks/{id}``     the task's state, and its result once done
* ``GET  /models``         the models in the store, with their cards
* ``GET  /healthz``        liveness
* ``GET  /v2/...``         the Open Inference Protocol (KServe V2): metadata, health, infer
* ``GET  /docs``           OpenAPI docs

The Ingress deployment (:mod:`serve_app.ingress`) subclasses :class:`HttpRoutes`; Serve's
class-based ingress binds the routes declared on :data:`api` to it (inherited route methods
count). The routes reach the serving graph only through :class:`RouteBackend`. What every route
shares:

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

(No ``from __future__ import annotations`` in this module: FastAPI must see the route
signatures' real types through Serve's class-based ingress.)
"""

import copy
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app import oip
from serve_app.config import AppArgs
from serve_app.errors import (
    InvalidInputError,
    MalformedBodyError,
    PayloadTooLargeError,
    ServeAppError,
    UnsupportedMediaError,
)
from serve_app.grpc_api import SERVICE_NAME
from serve_app.inputs import (
    JSON_MEDIA_TYPES,
    NPY_MEDIA_TYPE,
    PixelScale,
    decode_image_files,
    decode_npy_body,
    decode_payload,
    media_type,
    parse_json_body,
)
from serve_app.metrics import ingress_metrics
from serve_app.oip import HEADER_LENGTH, OipError
from serve_app.schemas import (
    ERROR_RESPONSES,
    OIP_ERROR_RESPONSES,
    HealthResponse,
    ModelsResponse,
    OipInferResponse,
    OipLive,
    OipModelConfig,
    OipModelMetadata,
    OipReady,
    OipServerMetadata,
    PredictResponse,
    TaskAccepted,
    TaskStatus,
    oip_infer_request_schema,
    predict_request_schema,
)

if TYPE_CHECKING:
    from serve_app.task_client import TaskClient  # imports Ray; the routes only call it

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
    # The ignores: Starlette types every handler as taking any Exception; each of these takes the
    # class it is registered for, which is all Starlette ever passes it.
    app.add_exception_handler(ServeAppError, _serve_app_error)  # type: ignore[arg-type]  # see above
    app.add_exception_handler(StarletteHTTPException, _http_exception)  # type: ignore[arg-type]  # see above
    app.add_exception_handler(RequestValidationError, _request_validation_error)  # type: ignore[arg-type]  # see above
    app.add_exception_handler(OipError, _oip_error)  # type: ignore[arg-type]  # see above


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


api.openapi = _openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the OpenAPI schema


# --- the routes -------------------------------------------------------------------------------------

#: The Open Inference Protocol's routes in the OpenAPI docs.
OIP_TAG = "Open Inference Protocol (KServe V2)"


class RouteBackend(Protocol):
    """What the routes need from the deployment that serves them (the Ingress): its graph and store."""

    #: The application's arguments (default model, body and batch limits).
    args: AppArgs

    def _resolve_model(self, request: Request | None = None) -> str:
        """The request's model id (header or handle option), else the default; 404 when unknown."""
        ...

    async def _classify(self, pixels: np.ndarray, model_id: str) -> dict[str, Any]:
        """Validated (N, 1, 28, 28) pixels -> ``predicted_label``, ``probabilities``, ``model_id``."""
        ...

    def _task_client(self) -> "TaskClient":
        """The asynchronous inference client; 503 when this deployment has none."""
        ...

    def _models_listing(self) -> dict[str, Any]:
        """The store's models with their cards' facts, the default and the header that chooses one."""
        ...

    def _oip_model(self, model_name: str, model_version: str | None = None, request: Request | None = None) -> str:
        """The store's model of that name (and the one version), else the protocol's 404."""
        ...

    def _ready(self) -> bool:
        """Whether the default model is in the store."""
        ...


async def read_pixels(request: Request, pixel_scale: PixelScale, max_batch_images: int) -> np.ndarray:
    """The body as validated pixels: a JSON batch, or a ``.npy`` array (``application/x-npy``).

    A ``.npy`` array is read with the ``pixel_scale`` query parameter; a JSON body says its own.
    """
    content_type = media_type(request.headers.get("content-type"))
    if content_type not in (*JSON_MEDIA_TYPES, NPY_MEDIA_TYPE):
        raise UnsupportedMediaError(
            f"content type {content_type!r} is not accepted here; send application/json or {NPY_MEDIA_TYPE}"
        )
    body = await request.body()  # at most max_body_bytes: BodyLimit stops a longer one
    if content_type == NPY_MEDIA_TYPE:
        return decode_npy_body(body, pixel_scale, max_batch_images)
    return decode_payload(parse_json_body(body), max_batch_images)


async def read_uploads(files: list[UploadFile], max_batch_images: int, max_body_bytes: int) -> list[tuple[str, bytes]]:
    """The uploads' (file name, bytes), at most one past ``max_batch_images``; 413 past ``max_body_bytes`` in all."""
    contents = []
    total = 0
    for upload in files[: max_batch_images + 1]:
        content = await upload.read()
        total += len(content)
        if total > max_body_bytes:
            raise PayloadTooLargeError(f"uploads exceed the limit of {max_body_bytes} bytes")
        contents.append((upload.filename or "upload", content))
    return contents


class HttpRoutes(RouteBackend):
    """The HTTP routes of the Ingress, declared on :data:`api`; the deployment subclasses this class.

    Every route validates its input here, before any other deployment sees it; the deployment's
    side of :class:`RouteBackend` classifies and knows the models.
    """

    @api.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        summary="Classify a JSON batch of digits",
    )
    async def predict_json(
        self,
        request: Request,
        pixel_scale: PixelScale = Query("auto", description="for .npy bodies: how to read the pixels"),
    ) -> dict[str, Any]:
        """Classify ``{"image": [...], "pixel_scale": "auto"}``, or the same batch as a ``.npy`` body."""
        model_id = self._resolve_model(request)
        return await self._classify(await read_pixels(request, pixel_scale, self.args.max_batch_images), model_id)

    @api.post(
        "/",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        summary="Classify a JSON batch (the tutorial's endpoint)",
    )
    async def predict_root(
        self,
        request: Request,
        pixel_scale: PixelScale = Query("auto", description="for .npy bodies: how to read the pixels"),
    ) -> dict[str, Any]:
        """The tutorial posts ``{"image": ...}`` to ``/``; same contract as ``/predict``."""
        return await self.predict_json(request, pixel_scale)

    @api.post(
        "/predict/image",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        summary="Classify uploaded PNG/JPEG digits",
    )
    async def predict_image(
        self,
        request: Request,
        files: list[UploadFile] = File(
            description="one or more PNG or JPEG digits; larger images are resized to 28x28"
        ),
        # "true" or "false" only, exactly what the schema says (FastAPI's bool would also take 1, on, yes...).
        invert: Literal["true", "false"] = Query(
            "false", description="true: invert black-on-white drawings to MNIST's white-on-black"
        ),
    ) -> dict[str, Any]:
        """Classify uploaded image files, one prediction per file in upload order."""
        model_id = self._resolve_model(request)
        contents = await read_uploads(files, self.args.max_batch_images, self.args.max_body_bytes)
        pixels = decode_image_files(contents, self.args.max_batch_images, invert == "true")
        return await self._classify(pixels, model_id)

    @api.post(
        "/tasks",
        status_code=202,
        response_model=TaskAccepted,
        responses=ERROR_RESPONSES,
        summary="Submit a JSON batch for asynchronous classification",
    )
    async def submit_task(
        self,
        request: Request,
        response: Response,
        pixel_scale: PixelScale = Query("auto", description="for .npy bodies: how to read the pixels"),
    ) -> dict[str, Any]:
        """Validate now (422 for a bad body), enqueue, answer 202 with the task id at once."""
        tasks = self._task_client()
        model_id = self._resolve_model(request)
        pixels = await read_pixels(request, pixel_scale, self.args.max_batch_images)
        task_id = await tasks.submit(pixels, model_id)
        response.headers["Location"] = f"/tasks/{task_id}"
        return {"task_id": task_id, "state": "pending", "status_url": f"/tasks/{task_id}"}

    @api.get("/tasks/{task_id}", response_model=TaskStatus, responses=ERROR_RESPONSES, summary="A task's state")
    async def task_status(self, task_id: str) -> dict[str, Any]:
        """pending, started, retrying, succeeded (with the result) or failed (with the error)."""
        return await self._task_client().status(task_id)

    @api.get("/models", response_model=ModelsResponse, summary="The models clients can choose")
    async def models(self) -> dict[str, Any]:
        """Every model in the store, with the facts from its card; choose one with the model-id header."""
        return self._models_listing()

    @api.get("/healthz", response_model=HealthResponse, summary="Liveness")
    async def healthz(self) -> dict[str, Any]:
        """The ingress is up and knows its graph."""
        return {
            "status": "ok",
            "model_id": self.args.model_id,
            "max_batch_images": self.args.max_batch_images,
            "deployments": ["Ingress", "Preprocessor", "Classifier"],
        }

    # --- The Open Inference Protocol (KServe V2): serve_app/oip.py is the codec ----------------------

    @api.get("/v2", response_model=OipServerMetadata, tags=[OIP_TAG], summary="Server metadata and extensions")
    async def oip_server_metadata(self) -> dict[str, Any]:
        """Name, version, and the protocol extensions served."""
        return oip.server_metadata()

    @api.get("/v2/health/live", response_model=OipLive, tags=[OIP_TAG], summary="Server liveness")
    async def oip_live(self) -> dict[str, Any]:
        """The Ingress answers."""
        return {"live": True}

    @api.get("/v2/health/ready", response_model=OipReady, tags=[OIP_TAG], summary="Server readiness")
    async def oip_ready(self) -> dict[str, Any]:
        """Ready when the default model is in the store."""
        return {"ready": self._ready()}

    @api.get(
        "/v2/models/{model_name}",
        response_model=OipModelMetadata,
        responses=OIP_ERROR_RESPONSES,
        tags=[OIP_TAG],
        summary="Model metadata",
    )
    async def oip_model_metadata(self, model_name: str) -> dict[str, Any]:
        """The model's input and output tensors; -1 is the batch dimension."""
        return oip.model_metadata(self._oip_model(model_name))

    @api.get(
        "/v2/models/{model_name}/versions/{model_version}",
        response_model=OipModelMetadata,
        responses=OIP_ERROR_RESPONSES,
        tags=[OIP_TAG],
        summary="Model metadata (one version)",
    )
    async def oip_model_version_metadata(self, model_name: str, model_version: str) -> dict[str, Any]:
        """As ``/v2/models/{model_name}``; the one version is ``1``."""
        return oip.model_metadata(self._oip_model(model_name, model_version))

    @api.get(
        "/v2/models/{model_name}/ready",
        response_model=OipReady,
        responses=OIP_ERROR_RESPONSES,
        tags=[OIP_TAG],
        summary="Model readiness",
    )
    async def oip_model_ready(self, model_name: str) -> dict[str, Any]:
        """Every model of the store is ready: a Classifier replica loads it on first use."""
        self._oip_model(model_name)
        return {"ready": True}

    @api.get(
        "/v2/models/{model_name}/versions/{model_version}/ready",
        response_model=OipReady,
        responses=OIP_ERROR_RESPONSES,
        tags=[OIP_TAG],
        summary="Model readiness (one version)",
    )
    async def oip_model_version_ready(self, model_name: str, model_version: str) -> dict[str, Any]:
        """As ``/v2/models/{model_name}/ready``; the one version is ``1``."""
        self._oip_model(model_name, model_version)
        return {"ready": True}

    @api.get(
        "/v2/models/{model_name}/config",
        response_model=OipModelConfig,
        responses=OIP_ERROR_RESPONSES,
        tags=[OIP_TAG],
        summary="Model configuration (Triton's extension)",
    )
    async def oip_model_config(self, model_name: str) -> dict[str, Any]:
        """``max_batch_size`` is the service's batch limit; the tensors as in the metadata."""
        return oip.model_config(self._oip_model(model_name), self.args.max_batch_images)

    @api.get(
        "/v2/models/{model_name}/versions/{model_version}/config",
        response_model=OipModelConfig,
        responses=OIP_ERROR_RESPONSES,
        tags=[OIP_TAG],
        summary="Model configuration (one version)",
    )
    async def oip_model_version_config(self, model_name: str, model_version: str) -> dict[str, Any]:
        """As ``/v2/models/{model_name}/config``; the one version is ``1``."""
        return oip.model_config(self._oip_model(model_name, model_version), self.args.max_batch_images)

    @api.post(
        "/v2/models/{model_name}/infer",
        response_model=OipInferResponse,
        responses=OIP_ERROR_RESPONSES,
        openapi_extra=OIP_INFER_REQUEST_DOC,
        tags=[OIP_TAG],
        summary="Inference",
    )
    async def oip_infer(self, request: Request, model_name: str) -> Response:
        """Classify a tensor of digits; JSON, or JSON and raw tensors (the binary tensor data extension)."""
        return await self._oip_infer(request, self._oip_model(model_name, None, request))

    @api.post(
        "/v2/models/{model_name}/versions/{model_version}/infer",
        response_model=OipInferResponse,
        responses=OIP_ERROR_RESPONSES,
        openapi_extra=OIP_INFER_REQUEST_DOC,
        tags=[OIP_TAG],
        summary="Inference (one version)",
    )
    async def oip_version_infer(self, request: Request, model_name: str, model_version: str) -> Response:
        """As ``/v2/models/{model_name}/infer``; the one version is ``1``."""
        return await self._oip_infer(request, self._oip_model(model_name, model_version, request))

    async def _oip_infer(self, request: Request, model_id: str) -> Response:
        """One OIP inference over HTTP: the body decoded, classified, answered in the request's encoding."""
        header_length = request.headers.get(oip.HEADER_LENGTH)
        content_type = media_type(request.headers.get("content-type"))
        if header_length is None and content_type not in JSON_MEDIA_TYPES:
            raise oip.OipError(
                f"content type {content_type!r} needs the {oip.HEADER_LENGTH} header (binary tensor data), "
                "or send JSON",
                415,
            )
        parsed = oip.parse_http_request(await request.body(), header_length, self.args.max_batch_images)
        try:
            answer = await self._classify(parsed.pixels, model_id)
        except ServeAppError as error:  # busy or unavailable: the protocol's error body, Retry-After kept
            raise oip.OipError.from_service_error(error) from error
        body, json_length = oip.encode_http_response(
            model_id, parsed, answer["probabilities"], answer["predicted_label"]
        )
        if json_length is None:
            return Response(body, media_type="application/json")
        return Response(body, media_type="application/octet-stream", headers={oip.HEADER_LENGTH: str(json_length)})
