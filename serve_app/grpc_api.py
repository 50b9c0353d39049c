"""The gRPC API's messages <-> the service's values (pure; no Ray imports).

The contract is ``serve_app/proto/mnist.proto``; the Ingress deployment serves it through Ray Serve's
gRPC ingress (its ``Predict`` and ``ListModels`` methods) and calls these functions, so the gRPC
API validates and answers exactly as the HTTP API does. Each :class:`~serve_app.errors.ServeAppError`
has a gRPC status code (its ``grpc_code``), as it has an HTTP status.

Regenerate the stubs after changing the proto (needs grpcio-tools, a test dependency)::

    python -m serve_app.grpc_api --generate
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from serve_app.config import APP_NAME, REPO_ROOT
from serve_app.errors import InvalidInputError
from serve_app.inputs import decode_images
from serve_app.proto.mnist_pb2 import (
    ListModelsResponse,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    Probabilities,
)

PROTO_PATH = REPO_ROOT / "serve_app" / "proto" / "mnist.proto"
#: The Open Inference Protocol's gRPC service (serve_app/oip.py), on the same port.
OIP_PROTO_PATH = REPO_ROOT / "serve_app" / "proto" / "inference.proto"
#: The import path of the function that adds the service to a gRPC server: what the Serve
#: config's grpc_options.grpc_servicer_functions names.
SERVICER_FUNCTION = "serve_app.proto.mnist_pb2_grpc.add_MnistServicer_to_server"
OIP_SERVICER_FUNCTION = "serve_app.proto.inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server"
#: Every gRPC service the Ingress serves: grpc_options.grpc_servicer_functions of the Serve config.
SERVICER_FUNCTIONS = (SERVICER_FUNCTION, OIP_SERVICER_FUNCTION)
#: Fully qualified service name, for clients and grpcurl (``mnist_serve.v1.Mnist/Predict``).
SERVICE_NAME = "mnist_serve.v1.Mnist"
#: The gRPC metadata key that chooses a model (Serve's multiplexing key).
MODEL_METADATA_KEY = "multiplexed_model_id"
#: The gRPC metadata key that names the Serve application. Serve routes a call without it only
#: while the cluster has exactly one application with a gRPC ingress (HAProxy keeps a deleted
#: application's backend for some seconds, during which such calls get NOT_FOUND): clients name it.
APPLICATION_METADATA_KEY = "application"
PIXELS_PER_IMAGE = 28 * 28
#: Serve 2.60 reads the largest gRPC message its ingress servers accept from this variable when
#: its processes start (its default: 2 GiB). The local run and the chart set it to
#: :data:`DEFAULT_GRPC_MAX_MESSAGE_BYTES`, the HTTP API's default body limit, so an oversized
#: message is refused (RESOURCE_EXHAUSTED) before it is held in the Ingress's memory.
GRPC_MAX_MESSAGE_ENV = "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"
DEFAULT_GRPC_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def call_metadata(model_id: str | None = None, application: str = APP_NAME) -> list[tuple[str, str]]:
    """The metadata of a call: the application it is for and, when given, the model that should answer."""
    metadata = [(APPLICATION_METADATA_KEY, application)]
    return [*metadata, (MODEL_METADATA_KEY, model_id)] if model_id else metadata


def _images_from_flat(values: np.ndarray, kind: str) -> np.ndarray:
    """N * 784 pixel values -> (N, 28, 28) (a view), refusing none and a count that is not whole digits.

    The batch size is checked by :func:`~serve_app.inputs.decode_images`, as for the HTTP API.
    """
    if values.size == 0:
        raise InvalidInputError(f"'{kind}' is empty; send at least one digit of {PIXELS_PER_IMAGE} pixels")
    if values.size % PIXELS_PER_IMAGE:
        raise InvalidInputError(
            f"'{kind}' holds {values.size} pixels, not a whole number of 28x28 digits "
            f"({PIXELS_PER_IMAGE} pixels each, row-major)"
        )
    return values.reshape(values.size // PIXELS_PER_IMAGE, 28, 28)


def request_pixels(request: PredictRequest, max_images: int) -> np.ndarray:
    """A ``PredictRequest`` -> validated (N, 1, 28, 28) pixels, as the HTTP API validates them.

    ``raw`` bytes are uint8 pixels 0-255; ``scaled`` values are floats in [0, 1].
    """
    which = request.WhichOneof("pixels")
    if which == "raw":
        flat = np.frombuffer(request.raw, dtype=np.uint8)
        return decode_images(_images_from_flat(flat, "raw"), "uint8", max_images)
    if which == "scaled":
        flat = np.asarray(request.scaled.values, dtype=np.float32)
        return decode_images(_images_from_flat(flat, "scaled"), "unit", max_images)
    raise InvalidInputError(
        "PredictRequest has no pixels; set 'raw' (uint8 bytes, 784 per digit) or 'scaled' (floats in [0, 1])"
    )


def predict_response(answer: Mapping[str, Any]) -> PredictResponse:
    """The graph's answer (``predicted_label``, ``probabilities``, ``model_id``) as a ``PredictResponse``."""
    return PredictResponse(
        predicted_label=answer["predicted_label"],
        probabilities=[Probabilities(values=row) for row in answer["probabilities"]],
        model_id=answer["model_id"],
    )


def models_response(listing: Mapping[str, Any]) -> ListModelsResponse:
    """The model listing of ``GET /models`` as a ``ListModelsResponse``."""
    return ListModelsResponse(
        default_model_id=listing["default_model_id"],
        metadata_key=MODEL_METADATA_KEY,
        models=[ModelInfo(**model) for model in listing["models"]],
    )


#: The protos and their generated files, next to them.
PROTOS = (PROTO_PATH, OIP_PROTO_PATH)
STUB_NAMES = tuple(f"{proto.stem}{suffix}" for proto in PROTOS for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))


def generate_stubs(out_dir: Path = REPO_ROOT) -> list[Path]:
    """Generate :data:`STUB_NAMES` from the protos under ``out_dir`` (the repository: in place); their paths."""
    out = str(out_dir.resolve())
    relatives = [str(proto.relative_to(REPO_ROOT)) for proto in PROTOS]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *relatives,
        ],
        cwd=REPO_ROOT,
        check=True,
    )
    return [out_dir / PROTO_PATH.relative_to(REPO_ROOT).parent / name for name in STUB_NAMES]


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``--generate`` regenerates the stubs."""
    parser = argparse.ArgumentParser(description="mnist-serve's gRPC API")
    parser.add_argument("--generate", action="store_true", help="regenerate the Python stubs from the .proto files")
    args = parser.parse_args(argv)
    if not args.generate:
        parser.print_help()
        return
    generate_stubs()
    print("regenerated the stubs of " + ", ".join(str(p.relative_to(REPO_ROOT)) for p in PROTOS))


if __name__ == "__main__":
    main()
