"""Request and response schemas of the HTTP API (pydantic v2).

The request body's JSON Schema (:func:`predict_request_schema`) documents the contract in the
OpenAPI schema (``/docs``) as strictly as JSON Schema can; the ingress parses bodies itself
(:mod:`serve_app.inputs`) so that every mistake gets a precise message and the right status.
Responses are validated pydantic models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

#: The image layouts a batch may use (one per batch), as (rows, columns, channels-last) shapes.
IMAGE_LAYOUTS = ("28x28", "1x28x28", "28x28x1")
#: How a pixel may be written: raw (integers 0-255) or scaled like ToTensor (numbers in [0, 1]).
PIXEL_SCHEMAS: dict[str, dict[str, object]] = {
    "uint8": {"type": "integer", "minimum": 0, "maximum": 255},
    "unit": {"type": "number", "minimum": 0, "maximum": 1},
}
PIXEL_SCALE_DOC = (
    "'uint8': integers 0-255. 'unit': numbers in [0, 1] (what torchvision's ToTensor gives). 'auto' "
    "(the default): 'uint8' when every number is a whole number (255 and 255.0 alike, as JSON reads "
    "them), otherwise 'unit'; so a [0, 1] image of nothing but 0s and 1s needs 'unit'."
)


def _exactly(items: dict[str, object], count: int) -> dict[str, object]:
    return {"type": "array", "items": items, "minItems": count, "maxItems": count}


def image_schema(layout: str, scale: str) -> dict[str, object]:
    """One image of a layout (28x28, 1x28x28, 28x28x1) with pixels of a scale (uint8, unit)."""
    pixel = PIXEL_SCHEMAS[scale]
    if layout == "28x28x1":
        return _exactly(_exactly(_exactly(pixel, 1), 28), 28)
    plane = _exactly(_exactly(pixel, 28), 28)
    return _exactly(plane, 1) if layout == "1x28x28" else plane


def batch_schema(layout: str, scale: str, max_images: int) -> dict[str, object]:
    """1 to ``max_images`` images, all of one layout and scale."""
    return {
        "type": "array",
        "items": image_schema(layout, scale),
        "minItems": 1,
        "maxItems": max_images,
        "description": f"{layout} images, {scale} pixels",
    }


def predict_request_schema(max_images: int) -> dict[str, object]:
    """JSON Schema of a ``/predict`` body: exactly what :func:`serve_app.inputs.decode_payload` accepts.

    ``{"image": [...], "pixel_scale": ...}`` with 1 to ``max_images`` images of one layout, whose
    pixels suit the scale: an explicit ``uint8`` or ``unit`` allows only its kind of number;
    ``auto`` (or no ``pixel_scale``) allows a batch written in either. More images than
    ``max_images`` is answered 413 rather than 422.
    """

    def body(scales: list[str], pixel_kinds: tuple[str, ...], required: list[str]) -> dict[str, object]:
        batches = [batch_schema(layout, kind, max_images) for layout in IMAGE_LAYOUTS for kind in pixel_kinds]
        return {
            "type": "object",
            "additionalProperties": False,
            "required": required,
            "properties": {
                "image": {"anyOf": batches, "description": "N >= 1 images of one layout: 28x28, 1x28x28 or 28x28x1"},
                "pixel_scale": {"enum": scales, "description": PIXEL_SCALE_DOC},
            },
        }

    return {
        "title": "PredictRequest",
        "description": "A batch of 28x28 greyscale digits, white on black, as MNIST. NaN and infinity are refused.",
        "anyOf": [
            body(["auto"], ("uint8", "unit"), ["image"]),
            body(["uint8"], ("uint8",), ["image", "pixel_scale"]),
            body(["unit"], ("unit",), ["image", "pixel_scale"]),
        ],
        "examples": [{"image": [[[0] * 28] * 28], "pixel_scale": "uint8"}],
    }


class PredictResponse(BaseModel):
    """Predictions, in the order of the input images."""

    predicted_label: list[int] = Field(description="the most probable digit for each image")
    probabilities: list[list[float]] = Field(description="softmax over the digits 0-9 for each image")
    model_id: str = Field(description="the model that answered")


class ModelInfo(BaseModel):
    """One model of the store."""

    model_id: str
    default: bool = Field(description="served when a request names no model")
    test_accuracy: float = Field(description="accuracy on the 10,000 MNIST test images (with its pixel transform)")
    parameters: int
    pixel_transform: str = Field(description="'none', or 'invert' for a model of black-on-white digits")


class ModelsResponse(BaseModel):
    """The models clients can choose, and how."""

    default_model_id: str
    header: str = Field(description="HTTP header that chooses a model")
    models: list[ModelInfo]


class TaskAccepted(BaseModel):
    """A task was queued."""

    task_id: str
    state: Literal["pending"]
    status_url: str = Field(description="poll this for the state and, once done, the result")


class TaskStatus(BaseModel):
    """A task's state, and its result (succeeded) or error (failed, retrying)."""

    task_id: str
    state: Literal["pending", "started", "retrying", "succeeded", "failed"]
    result: PredictResponse | None = None
    error: str | None = None


class ErrorResponse(BaseModel):
    """Every 4xx/5xx the service sends has this body."""

    detail: str = Field(description="what was wrong, and what to send instead")
    error: str = Field(description="error class, e.g. InvalidInputError")
    status: int


class HealthResponse(BaseModel):
    """Liveness of the ingress and the configured graph."""

    status: Literal["ok"]
    model_id: str
    max_batch_images: int
    deployments: list[str]


#: FastAPI's ``responses=`` of the routes: status -> the OpenAPI response it documents.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "malformed JSON or multipart body"},
    404: {"model": ErrorResponse, "description": "unknown model id (the message lists the known ones)"},
    413: {"model": ErrorResponse, "description": "more images or bytes than the service accepts"},
    415: {"model": ErrorResponse, "description": "unsupported content type"},
    422: {"model": ErrorResponse, "description": "bad image: shape, type, range, NaN/inf, empty batch"},
    503: {"model": ErrorResponse, "description": "saturated or a deployment is unavailable; see Retry-After"},
}


# --- the Open Inference Protocol (KServe V2), serve_app/oip.py ----------------------------------------


#: The outputs of every model (serve_app/oip.py's OUTPUTS), in the order they are answered.
OIP_OUTPUT_NAMES = ("probabilities", "label")


class OipErrorBody(BaseModel):
    """The protocol's error body."""

    error: str


class OipLive(BaseModel):
    """``GET /v2/health/live``."""

    live: bool


class OipReady(BaseModel):
    """Readiness of the server or of a model."""

    ready: bool


class OipServerMetadata(BaseModel):
    """``GET /v2``."""

    name: str
    version: str
    extensions: list[str]


class OipTensorMetadata(BaseModel):
    """A tensor of a model: -1 in the shape is the batch dimension."""

    name: str
    datatype: str
    shape: list[int]


class OipModelMetadata(BaseModel):
    """``GET /v2/models/{model}``."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[OipTensorMetadata]
    outputs: list[OipTensorMetadata]
    parameters: dict[str, str] = Field(description="the input's other accepted datatype and shape")


class OipModelConfig(BaseModel):
    """``GET /v2/models/{model}/config``: Triton's model configuration, minimal and truthful."""

    name: str
    platform: str
    max_batch_size: int
    input: list[dict[str, object]]
    output: list[dict[str, object]]


class OipOutputTensor(BaseModel):
    """One output of an answer: ``data`` in JSON, or ``parameters.binary_data_size`` raw bytes after it."""

    name: Literal["probabilities", "label"]
    datatype: Literal["FP32", "INT64"]
    shape: list[int]
    data: list[float] | None = None
    parameters: dict[str, int] | None = None


class OipInferResponse(BaseModel):
    """An inference answer (with the binary extension: this JSON, then the raw outputs)."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OipOutputTensor]


OIP_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": OipErrorBody, "description": "a request the protocol refuses: datatype, shape, data, outputs"},
    404: {"model": OipErrorBody, "description": "unknown model or version"},
    413: {"model": OipErrorBody, "description": "more images or bytes than the service accepts"},
    415: {"model": OipErrorBody, "description": "a content type other than JSON without the binary header"},
}


def oip_infer_request_schema(max_images: int) -> dict[str, object]:
    """JSON Schema of an OIP inference request (JSON data): what :func:`serve_app.oip.parse_http_request` takes.

    What JSON Schema cannot say is in the descriptions: ``data`` holds exactly prod(shape) values
    (flat, or nested), in [0, 1] for FP32 and 0-255 for UINT8; each output is named once.
    """
    batch = {"type": "integer", "minimum": 1, "maximum": max_images}
    shapes = [
        {
            "type": "array",
            "prefixItems": [batch, {"const": 1}, {"const": 28}, {"const": 28}],
            "items": False,
            "minItems": 4,
        },
        {"type": "array", "prefixItems": [batch, {"const": 28}, {"const": 28}], "items": False, "minItems": 3},
    ]
    number = {"type": "number", "minimum": 0, "maximum": 255}
    data = {
        "type": "array",
        "items": {"anyOf": [number, {"type": "array"}]},
        "description": "prod(shape) values, flat or nested row-major: FP32 in [0, 1], UINT8 whole numbers 0-255",
    }
    tensor = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "datatype", "shape", "data"],
        "properties": {
            "name": {"const": "image"},
            "datatype": {"enum": ["FP32", "UINT8"]},
            "shape": {"anyOf": shapes, "description": f"[N, 1, 28, 28] or [N, 28, 28], N from 1 to {max_images}"},
            "data": data,
            "parameters": {"type": "object", "additionalProperties": False, "properties": {}},
        },
    }
    output = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": {"enum": list(OIP_OUTPUT_NAMES)},
            "parameters": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"binary_data": {"type": "boolean"}},
            },
        },
    }
    return {
        "title": "OipInferRequest",
        "type": "object",
        "additionalProperties": False,
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"binary_data_output": {"type": "boolean"}},
            },
            "inputs": {"type": "array", "items": tensor, "minItems": 1, "maxItems": 1},
            "outputs": {
                "type": "array",
                "items": output,
                "minItems": 1,
                "maxItems": 2,
                "description": "each named once",
            },
        },
    }
