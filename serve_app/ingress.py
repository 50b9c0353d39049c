"""Ingress deployment: the FastAPI HTTP API and the DeploymentHandle API.

HTTP (port 8000):

* ``POST /predict``        JSON batch -> labels, probabilities, model id
* ``POST /``               the tutorial's request shape, same answer
* ``POST /predict/image``  PNG/JPEG upload of one or more digits
* ``GET  /healthz``        liveness
* ``GET  /docs``           OpenAPI docs

Handle: ``handle.predict.remote({"image": ndarray})`` returns the same dict.

Every input is validated here, before any other deployment sees it, and every
failure is mapped to a status by :mod:`serve_app.errors`.

(No ``from __future__ import annotations`` in this module: FastAPI must see the
route signatures' real types through Serve's class-based ingress.)
"""

import logging
from typing import Any

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from serve_app.config import AppArgs
from serve_app.errors import (
    InvalidInputError,
    PayloadTooLargeError,
    ServeAppError,
    ServiceBusyError,
    ServiceUnavailableError,
    UnsupportedMediaError,
)
from serve_app.inputs import decode_image_files, decode_payload, parse_json_body
from serve_app.schemas import ERROR_RESPONSES, HealthResponse, PredictRequest, PredictResponse

logger = logging.getLogger("ray.serve")

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

_JSON_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
    }
}


@api.exception_handler(ServeAppError)
async def _serve_app_error(_: Request, exc: ServeAppError) -> JSONResponse:
    return JSONResponse(exc.to_body(), status_code=int(exc.status), headers=exc.headers)


@api.exception_handler(RequestValidationError)
async def _request_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg')}" for error in exc.errors()
    )
    return await _serve_app_error(request, InvalidInputError(problems or "invalid request"))


def map_downstream_error(exc: Exception) -> ServeAppError:
    """Translate a failure of a downstream deployment call into a client-facing error."""
    if isinstance(exc, ServeAppError):
        return exc
    if isinstance(exc, BackPressureError):
        return ServiceBusyError("the classifier is saturated; retry after the Retry-After delay")
    if isinstance(exc, (DeploymentUnavailableError, RayActorError)):
        return ServiceUnavailableError(f"a model replica is unavailable ({type(exc).__name__}); retry shortly")
    logger.exception("unexpected error in the serving graph")
    return ServeAppError(f"internal error in the serving graph: {type(exc).__name__}")


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class Ingress:
    """Validates requests and drives Preprocessor -> Classifier."""

    def __init__(self, preprocessor: DeploymentHandle, classifier: DeploymentHandle, args: AppArgs) -> None:
        self.preprocessor = preprocessor
        self.classifier = classifier
        self.args = args

    async def _classify(self, pixels: np.ndarray) -> dict[str, Any]:
        """Validated (N, 1, 28, 28) pixels -> the Classifier's answer."""
        try:
            # Passing the Preprocessor's response straight on lets Serve hand the tensor
            # to the Classifier without a round trip through this replica.
            normalised = self.preprocessor.run.remote(pixels)
            return await self.classifier.predict.remote(normalised)
        except Exception as exc:
            raise map_downstream_error(exc) from exc

    async def _read_json(self, request: Request) -> Any:
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if content_type not in ("application/json", "", "text/plain"):
            raise UnsupportedMediaError(f"content type {content_type!r} is not accepted here; send application/json")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.args.max_body_bytes:
            raise PayloadTooLargeError(f"body of {declared} bytes exceeds the limit of {self.args.max_body_bytes}")
        body = await request.body()
        if len(body) > self.args.max_body_bytes:
            raise PayloadTooLargeError(f"body of {len(body)} bytes exceeds the limit of {self.args.max_body_bytes}")
        return parse_json_body(body)

    @api.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=_JSON_BODY_DOC,
        summary="Classify a JSON batch of digits",
    )
    async def predict_json(self, request: Request) -> dict[str, Any]:
        """Classify ``{"image": [...], "pixel_scale": "auto"}``."""
        payload = await self._read_json(request)
        return await self._classify(decode_payload(payload, self.args.max_batch_images))

    @api.post(
        "/",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=_JSON_BODY_DOC,
        summary="Classify a JSON batch (the tutorial's endpoint)",
    )
    async def predict_root(self, request: Request) -> dict[str, Any]:
        """The tutorial posts ``{"image": ...}`` to ``/``; same contract as ``/predict``."""
        return await self.predict_json(request)

    @api.post(
        "/predict/image",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        summary="Classify uploaded PNG/JPEG digits",
    )
    async def predict_image(
        self,
        files: list[UploadFile] = File(
            description="one or more PNG or JPEG digits; larger images are resized to 28x28"
        ),
        invert: bool = Query(False, description="invert black-on-white drawings to MNIST's white-on-black"),
    ) -> dict[str, Any]:
        """Classify uploaded image files, one prediction per file in upload order."""
        contents = []
        total = 0
        for upload in files[: self.args.max_batch_images + 1]:
            content = await upload.read()
            total += len(content)
            if total > self.args.max_body_bytes:
                raise PayloadTooLargeError(f"uploads exceed the limit of {self.args.max_body_bytes} bytes")
            contents.append((upload.filename or "upload", content))
        return await self._classify(decode_image_files(contents, self.args.max_batch_images, invert))

    @api.get("/healthz", response_model=HealthResponse, summary="Liveness")
    async def healthz(self) -> dict[str, Any]:
        """The ingress is up and knows its graph."""
        return {
            "status": "ok",
            "model_id": self.args.model_id,
            "max_batch_images": self.args.max_batch_images,
            "deployments": ["Ingress", "Preprocessor", "Classifier"],
        }

    async def predict(self, batch: dict[str, Any]) -> dict[str, Any]:
        """DeploymentHandle API: ``{"image": ndarray | nested lists}`` -> the same dict as ``/predict``."""
        return await self._classify(decode_payload(batch, self.args.max_batch_images))
