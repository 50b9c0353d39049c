"""The Open Inference Protocol (KServe V2) for mnist-serve: requests in, answers out (pure; no Serve).

Every model of the store is an OIP model with one input and two outputs:

==================  ===========  ==================  =============================================
tensor              datatype     shape               meaning
==================  ===========  ==================  =============================================
``image`` (input)   FP32         [-1, 1, 28, 28]     pixels in [0, 1] (what ToTensor gives);
                                 or [-1, 28, 28]     white digit on black, as MNIST
``image`` (input)   UINT8        the same            raw pixels 0-255
``probabilities``   FP32         [-1, 10]            softmax over the digits 0-9
``label``           INT64        [-1]                the most probable digit
==================  ===========  ==================  =============================================

Over HTTP a request is JSON, or JSON followed by raw tensors (the binary tensor data extension:
the ``Inference-Header-Content-Length`` header gives the JSON's length, each input with a
``binary_data_size`` parameter takes that many bytes, little-endian, in input order). Outputs come
back as JSON ``data``, or as raw bytes after the JSON for those requested with ``binary_data``
(or all of them, with the request parameter ``binary_data_output``). Over gRPC, inputs come in
``raw_input_contents`` or ``contents`` (FP32 in ``fp32_contents``, UINT8 in ``uint_contents``) and
outputs go out in ``raw_output_contents``, as Triton sends them.

A request that breaks any of this is an :class:`OipError` with the status the protocol gives it
(400; 404 for an unknown model or version; 413 for more images than the service takes), never
a server error. Pixels are validated exactly as for ``/predict`` (:mod:`serve_app.inputs`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np
from grpc import StatusCode

from serve_app.errors import InvalidInputError, PayloadTooLargeError, ServeAppError
from serve_app.inputs import PixelScale, decode_images
from serve_app.proto import inference_pb2 as pb

SERVER_NAME = "mnist-serve"
SERVER_VERSION = "0.1.0"
#: Protocol extensions served (GET /v2 lists them).
EXTENSIONS = ("binary_tensor_data", "model_configuration")
#: The one version of every model (the store keeps no versions).
MODEL_VERSION = "1"
#: Triton's name for a TorchScript model.
PLATFORM = "pytorch_libtorch"
HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT_NAME = "image"
#: Input datatype -> (pixel scale, little-endian dtype).
INPUT_DATATYPES: dict[str, tuple[PixelScale, str]] = {"FP32": ("unit", "<f4"), "UINT8": ("uint8", "u1")}
#: Output name -> (datatype, shape with -1 for the batch, little-endian dtype).
OUTPUTS: dict[str, tuple[str, tuple[int, ...], str]] = {
    "probabilities": ("FP32", (-1, 10), "<f4"),
    "label": ("INT64", (-1,), "<i8"),
}
INPUT_SHAPES = ((-1, 1, 28, 28), (-1, 28, 28))


class OipError(Exception):
    """A request the protocol refuses: an HTTP status, a gRPC code and ``{"error": message}``."""

    def __init__(
        self, message: str, status: int = HTTPStatus.BAD_REQUEST, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = int(status)
        self.headers = headers or {}

    @property
    def grpc_code(self) -> StatusCode:
        """The gRPC code of the same refusal."""
        return StatusCode.NOT_FOUND if self.status == HTTPStatus.NOT_FOUND else StatusCode.INVALID_ARGUMENT

    def to_body(self) -> dict[str, str]:
        """The protocol's error body."""
        return {"error": self.message}

    @classmethod
    def from_service_error(cls, error: ServeAppError) -> OipError:
        """The OIP form of one of the service's own errors (422 is a 400 here, as the protocol says)."""
        status = int(error.status)
        if status == HTTPStatus.UNPROCESSABLE_ENTITY:
            status = HTTPStatus.BAD_REQUEST
        return cls(error.message, status, error.headers)


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for, and whether it wants it as raw bytes."""

    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """A validated inference request: (N, 1, 28, 28) pixels and the outputs to send back."""

    id: str | None
    pixels: np.ndarray
    outputs: tuple[RequestedOutput, ...]


# --- metadata ---------------------------------------------------------------------------------------


def server_metadata() -> dict[str, Any]:
    """``GET /v2``."""
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)}


def check_version(version: str | None) -> None:
    """A version other than :data:`MODEL_VERSION` is unknown (404)."""
    if version not in (None, "", MODEL_VERSION):
        raise OipError(f"model version {version!r} is unknown; the only version is {MODEL_VERSION!r}", 404)


def model_metadata(model_id: str) -> dict[str, Any]:
    """``GET /v2/models/{model}``: the model's tensors, -1 for the batch dimension."""
    return {
        "name": model_id,
        "versions": [MODEL_VERSION],
        "platform": PLATFORM,
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": list(INPUT_SHAPES[0])}],
        "outputs": [{"name": n, "datatype": d, "shape": list(s)} for n, (d, s, _) in OUTPUTS.items()],
        "parameters": {
            "input_datatypes": " ".join(INPUT_DATATYPES),
            "input_shapes": "[-1, 1, 28, 28] or [-1, 28, 28]",
        },
    }


def model_config(model_id: str, max_batch_size: int) -> dict[str, Any]:
    """``GET /v2/models/{model}/config`` (Triton's model configuration extension), truthful and minimal."""
    return {
        "name": model_id,
        "platform": PLATFORM,
        "max_batch_size": max_batch_size,
        "input": [{"name": INPUT_NAME, "data_type": "TYPE_FP32", "format": "FORMAT_NCHW", "dims": [1, 28, 28]}],
        "output": [
            {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [10]},
            {"name": "label", "data_type": "TYPE_INT64", "dims": [1], "reshape": {"shape": []}},
        ],
    }


# --- requests -----------------------------------------------------------------------------------------


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON part, raw tensor bytes) of an HTTP body; without the header the whole body is JSON."""
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit():
        raise OipError(f"{HEADER_LENGTH} must be a byte count, got {header_length!r}")
    length = int(header_length)
    if length > len(body):
        raise OipError(f"{HEADER_LENGTH} is {length} but the body has only {len(body)} bytes")
    return body[:length], body[length:]


def _parse_json(text: bytes) -> Mapping[str, Any]:
    if not text.strip():
        raise OipError("empty request; send an inference request as JSON")
    try:
        parsed = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OipError(f"malformed JSON: {error}") from None
    except RecursionError:
        raise OipError("malformed JSON: nested too deeply") from None
    if not isinstance(parsed, Mapping):
        raise OipError(f"an inference request is a JSON object, got {type(parsed).__name__}")
    return parsed


#: The parameters served, by where they appear; any other is refused by name (nothing is ignored).
REQUEST_PARAMETERS = ("binary_data_output",)
INPUT_PARAMETERS = ("binary_data_size",)
OUTPUT_PARAMETERS = ("binary_data",)


def _as_parameters(value: Any, where: str, allowed: Sequence[str]) -> Mapping[str, Any]:
    """``value`` as a parameters object holding only ``allowed`` names (the others: 400, by name)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise OipError(f"{where} parameters must be an object")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        served = ", ".join(allowed) or "none"
        raise OipError(f"{where} parameter {unknown[0]!r} is not served here (served: {served})")
    return value


def _is_whole_number(value: Any) -> bool:
    """An integer as JSON Schema reads one: ``3`` and ``3.0`` are, ``true`` and ``3.5`` are not."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _shape_of(value: Any, max_images: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_is_whole_number(n) for n in value):
        raise OipError(f"input {INPUT_NAME!r}: shape must be a list of integers, got {value!r}")
    shape = tuple(int(n) for n in value)
    if len(shape) not in (3, 4) or shape[1:] not in ((1, 28, 28), (28, 28)) or shape[0] < 1:
        raise OipError(f"input {INPUT_NAME!r}: shape {list(shape)} is not [N, 1, 28, 28] or [N, 28, 28] with N >= 1")
    if shape[0] > max_images:
        raise OipError(
            f"a batch of {shape[0]} images exceeds this service's maximum of {max_images} per request",
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        )
    return shape


def _values_from_json(data: Any, datatype: str, count: int) -> np.ndarray:
    if not isinstance(data, list):
        raise OipError(f"input {INPUT_NAME!r}: data must be a list of numbers")
    try:
        values = np.asarray(data, dtype=np.float64).ravel()
    except (ValueError, TypeError, OverflowError):
        raise OipError(f"input {INPUT_NAME!r}: data must be numbers, nested evenly") from None
    if values.size != count:
        raise OipError(f"input {INPUT_NAME!r}: shape asks for {count} values, data has {values.size}")
    if datatype == "UINT8":
        if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
            raise OipError(f"input {INPUT_NAME!r}: UINT8 data must be whole numbers 0-255")
        if values.min() < 0 or values.max() > 255:
            raise OipError(f"input {INPUT_NAME!r}: UINT8 data must lie in [0, 255]")
        return values.astype(np.uint8)
    return values.astype(np.float32)


def _pixels(values: np.ndarray, shape: tuple[int, ...], scale: PixelScale, max_images: int) -> np.ndarray:
    try:
        return decode_images(values.reshape(shape), scale, max_images)
    except (InvalidInputError, PayloadTooLargeError) as error:
        raise OipError.from_service_error(error) from None


def _requested_outputs(value: Any, binary_default: bool) -> tuple[RequestedOutput, ...]:
    if value is None:
        return tuple(RequestedOutput(name, binary_default) for name in OUTPUTS)
    if not isinstance(value, list) or not value:
        raise OipError("outputs must be a non-empty list of {name, parameters}")
    requested: list[RequestedOutput] = []
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise OipError("each requested output needs a name")
        if set(item) - {"name", "parameters"}:
            raise OipError(f"unknown field(s) {sorted(set(item) - {'name', 'parameters'})} in output {item['name']!r}")
        name = item["name"]
        if name not in OUTPUTS:
            raise OipError(f"output {name!r} is unknown; this model has {sorted(OUTPUTS)}")
        if any(r.name == name for r in requested):
            raise OipError(f"output {name!r} is requested twice")
        parameters = _as_parameters(item.get("parameters"), f"output {name!r}", OUTPUT_PARAMETERS)
        binary = parameters.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise OipError(f"output {name!r}: binary_data must be true or false")
        requested.append(RequestedOutput(name, binary))
    return tuple(requested)


def parse_http_request(body: bytes, header_length: str | None, max_images: int) -> InferRequest:
    """An HTTP inference request (JSON, or JSON and raw tensors) -> validated pixels and outputs."""
    json_part, tail = split_body(body, header_length)
    request = _parse_json(json_part)
    unknown = set(request) - {"id", "parameters", "inputs", "outputs"}
    if unknown:
        raise OipError(f"unknown field(s) {sorted(unknown)} in the inference request")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise OipError("id must be a string")
    parameters = _as_parameters(request.get("parameters"), "request", REQUEST_PARAMETERS)
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise OipError("binary_data_output must be true or false")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], Mapping):
        raise OipError(f"inputs must hold exactly one tensor, {INPUT_NAME!r}")
    tensor = inputs[0]
    extra = set(tensor) - {"name", "datatype", "shape", "data", "parameters"}
    if extra:
        raise OipError(f"unknown field(s) {sorted(extra)} in input {tensor.get('name')!r}")
    if tensor.get("name") != INPUT_NAME:
        raise OipError(f"input {tensor.get('name')!r} is unknown; this model's input is {INPUT_NAME!r}")
    datatype = tensor.get("datatype")
    if datatype not in INPUT_DATATYPES:
        raise OipError(
            f"input {INPUT_NAME!r}: datatype {datatype!r} is not accepted; send {' or '.join(INPUT_DATATYPES)}"
        )
    shape = _shape_of(tensor.get("shape"), max_images)
    scale, dtype = INPUT_DATATYPES[datatype]
    count = math.prod(shape)
    tensor_parameters = _as_parameters(tensor.get("parameters"), f"input {INPUT_NAME!r}", INPUT_PARAMETERS)
    size = tensor_parameters.get("binary_data_size")
    if size is not None:
        if "data" in tensor:
            raise OipError(f"input {INPUT_NAME!r}: give data or binary_data_size, not both")
        expected = count * np.dtype(dtype).itemsize
        if not isinstance(size, int) or isinstance(size, bool) or size != expected:
            raise OipError(f"input {INPUT_NAME!r}: binary_data_size must be {expected} for shape {list(shape)}")
        if len(tail) != size:
            raise OipError(f"input {INPUT_NAME!r}: {size} bytes of binary data announced, {len(tail)} sent")
        values = np.frombuffer(tail, dtype=dtype, count=count)
    else:
        if tail:
            raise OipError(f"{len(tail)} bytes after the JSON, but no input has binary_data_size")
        if "data" not in tensor:
            raise OipError(f"input {INPUT_NAME!r}: no data (and no binary_data_size)")
        values = _values_from_json(tensor["data"], datatype, count)
    return InferRequest(
        request_id,
        _pixels(values, shape, scale, max_images),
        _requested_outputs(request.get("outputs"), binary_default),
    )


# --- answers -----------------------------------------------------------------------------------------


def output_arrays(probabilities: Sequence[Sequence[float]], labels: Sequence[int]) -> dict[str, np.ndarray]:
    """The model's answer as the protocol's output tensors (little-endian)."""
    return {
        "probabilities": np.asarray(probabilities, dtype="<f4"),
        "label": np.asarray(labels, dtype="<i8"),
    }


def encode_http_response(
    model_id: str, request: InferRequest, probabilities: Sequence[Sequence[float]], labels: Sequence[int]
) -> tuple[bytes, int | None]:
    """(body, JSON length when raw outputs follow it, else None) of an HTTP inference answer."""
    arrays = output_arrays(probabilities, labels)
    outputs, tail = [], []
    for requested in request.outputs:
        array = arrays[requested.name]
        datatype = OUTPUTS[requested.name][0]
        entry: dict[str, Any] = {"name": requested.name, "datatype": datatype, "shape": list(array.shape)}
        if requested.binary:
            raw = array.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        else:
            entry["data"] = array.ravel().tolist()
        outputs.append(entry)
    answer: dict[str, Any] = {"model_name": model_id, "model_version": MODEL_VERSION, "outputs": outputs}
    if request.id is not None:
        answer["id"] = request.id
    header = json.dumps(answer, separators=(",", ":")).encode()
    return (header + b"".join(tail), len(header)) if tail else (header, None)


# --- gRPC ---------------------------------------------------------------------------------------------


def parse_grpc_request(request: pb.ModelInferRequest, max_images: int) -> InferRequest:
    """A ``ModelInferRequest`` -> validated pixels and outputs (raw outputs, as Triton answers)."""
    _as_parameters(dict(request.parameters), "request", ())
    if len(request.inputs) != 1:
        raise OipError(f"inputs must hold exactly one tensor, {INPUT_NAME!r}")
    tensor = request.inputs[0]
    _as_parameters(dict(tensor.parameters), f"input {tensor.name!r}", ())
    if tensor.name != INPUT_NAME:
        raise OipError(f"input {tensor.name!r} is unknown; this model's input is {INPUT_NAME!r}")
    if tensor.datatype not in INPUT_DATATYPES:
        raise OipError(
            f"input {INPUT_NAME!r}: datatype {tensor.datatype!r} is not accepted; send {' or '.join(INPUT_DATATYPES)}"
        )
    shape = _shape_of(list(tensor.shape), max_images)
    scale, dtype = INPUT_DATATYPES[tensor.datatype]
    count = math.prod(shape)
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1:
            raise OipError("raw_input_contents must hold one entry per input")
        raw = request.raw_input_contents[0]
        expected = count * np.dtype(dtype).itemsize
        if len(raw) != expected:
            raise OipError(
                f"input {INPUT_NAME!r}: raw contents of {len(raw)} bytes, shape {list(shape)} needs {expected}"
            )
        values = np.frombuffer(raw, dtype=dtype, count=count)
    else:
        contents = tensor.contents.fp32_contents if tensor.datatype == "FP32" else tensor.contents.uint_contents
        values = _values_from_json(list(contents), tensor.datatype, count)
    outputs: list[RequestedOutput] = []
    for output in request.outputs:
        if output.name not in OUTPUTS:
            raise OipError(f"output {output.name!r} is unknown; this model has {sorted(OUTPUTS)}")
        if any(o.name == output.name for o in outputs):
            raise OipError(f"output {output.name!r} is requested twice")
        _as_parameters(dict(output.parameters), f"output {output.name!r}", OUTPUT_PARAMETERS)
        outputs.append(RequestedOutput(output.name, True))
    requested = tuple(outputs) or tuple(RequestedOutput(name, True) for name in OUTPUTS)
    return InferRequest(request.id or None, _pixels(values, shape, scale, max_images), requested)


def encode_grpc_response(
    model_id: str, request: InferRequest, probabilities: Sequence[Sequence[float]], labels: Sequence[int]
) -> pb.ModelInferResponse:
    """A ``ModelInferResponse`` with every requested output in ``raw_output_contents``."""
    arrays = output_arrays(probabilities, labels)
    response = pb.ModelInferResponse(model_name=model_id, model_version=MODEL_VERSION, id=request.id or "")
    for requested in request.outputs:
        array = arrays[requested.name]
        response.outputs.add(name=requested.name, datatype=OUTPUTS[requested.name][0], shape=list(array.shape))
        response.raw_output_contents.append(array.tobytes())
    return response


def grpc_model_metadata(model_id: str) -> pb.ModelMetadataResponse:
    """:func:`model_metadata` as a ``ModelMetadataResponse``."""
    metadata = model_metadata(model_id)
    response = pb.ModelMetadataResponse(name=model_id, versions=metadata["versions"], platform=PLATFORM)
    for kind in ("inputs", "outputs"):
        for tensor in metadata[kind]:
            getattr(response, kind).add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
    return response


def grpc_model_config(model_id: str, max_batch_size: int) -> pb.ModelConfigResponse:
    """:func:`model_config` as a ``ModelConfigResponse``."""
    config = model_config(model_id, max_batch_size)
    message = pb.ModelConfig(name=model_id, platform=PLATFORM, max_batch_size=max_batch_size)
    for tensor in config["input"]:
        message.input.add(
            name=tensor["name"],
            data_type=pb.DataType.Value(tensor["data_type"]),
            format=pb.ModelInput.Format.Value(tensor["format"]),
            dims=tensor["dims"],
        )
    for tensor in config["output"]:
        output = message.output.add(
            name=tensor["name"], data_type=pb.DataType.Value(tensor["data_type"]), dims=tensor["dims"]
        )
        if "reshape" in tensor:
            output.reshape.shape.extend(tensor["reshape"]["shape"])
    return pb.ModelConfigResponse(config=message)


def grpc_server_metadata() -> pb.ServerMetadataResponse:
    """:func:`server_metadata` as a ``ServerMetadataResponse``."""
    return pb.ServerMetadataResponse(**server_metadata())
