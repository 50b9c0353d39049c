"""Request and response schemas of the HTTP API (pydantic v2).

The JSON request models document the contract in the OpenAPI schema (``/docs``);
the ingress parses bodies itself (:mod:`serve_app.inputs`) so that every
mistake gets a precise message and the right status. Responses are validated
pydantic models.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Row = Annotated[list[float], Field(min_length=28, max_length=28)]
Image2D = Annotated[list[Row], Field(min_length=28, max_length=28, description="28 rows of 28 pixels")]
Image3D = Annotated[
    list[Image2D], Field(min_length=1, max_length=1, description="one channel of 28x28 pixels (1x28x28)")
]


class PredictRequest(BaseModel):
    """A batch of 28x28 greyscale digits, white on black, as MNIST."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"image": [[[0] * 28] * 28], "pixel_scale": "uint8"},
            ]
        },
    )

    image: list[Image2D | Image3D] = Field(
        min_length=1,
        description=(
            "N >= 1 images, each 28x28 or 1x28x28 (28x28x1 is accepted too). Raw pixels are "
            "integers 0-255; pixels already scaled by ToTensor are floats in [0, 1]. NaN and "
            "infinity are rejected. More images than the service's max_batch_images is a 413."
        ),
    )
    pixel_scale: Literal["auto", "uint8", "unit"] = Field(
        "auto",
        description=(
            "'uint8': integers 0-255. 'unit': floats in [0, 1]. 'auto': 'uint8' if every "
            "number is an integer, otherwise 'unit'."
        ),
    )


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


ERROR_RESPONSES = {
    400: {"model": ErrorResponse, "description": "malformed JSON or multipart body"},
    404: {"model": ErrorResponse, "description": "unknown model id (the message lists the known ones)"},
    413: {"model": ErrorResponse, "description": "more images or bytes than the service accepts"},
    415: {"model": ErrorResponse, "description": "unsupported content type"},
    422: {"model": ErrorResponse, "description": "bad image: shape, type, range, NaN/inf, empty batch"},
    503: {"model": ErrorResponse, "description": "saturated or a deployment is unavailable; see Retry-After"},
}
