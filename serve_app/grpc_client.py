"""A command-line client of the gRPC API, and the few lines a Python client needs.

    python -m serve_app.grpc_client examples/digits/digit-7.png examples/digits/digit-3.png
    python -m serve_app.grpc_client examples/digits/digits-10.json --model mnist-cnn-small
    python -m serve_app.grpc_client --list-models
    python -m serve_app.grpc_client --target localhost:9000 examples/digits/digit.json

Files are PNG/JPEG digits (resized to 28x28 when larger) or JSON bodies of the HTTP API
(``{"image": [...]}``); their digits go in one ``Predict`` call, as raw uint8 bytes when the pixels
are 0-255 and as ``scaled`` floats when they are in [0, 1]. Prints the answer as JSON, like
``POST /predict``; a refused call prints its gRPC status and message and exits with 1 (2 for files it cannot read).

In your own code::

    import grpc
    from serve_app.proto import mnist_pb2, mnist_pb2_grpc

    stub = mnist_pb2_grpc.MnistStub(grpc.insecure_channel("localhost:9000"))
    answer = stub.Predict(
        mnist_pb2.PredictRequest(raw=pixels_uint8.tobytes()),   # N x 28 x 28
        metadata=[("application", "mnist")],                     # + ("multiplexed_model_id", ...) for a model
    )
    answer.predicted_label, answer.model_id
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from serve_app.config import APP_NAME
from serve_app.errors import ServeAppError
from serve_app.grpc_api import call_metadata
from serve_app.proto import mnist_pb2

DEFAULT_TARGET = "localhost:9000"
#: Overrides :data:`DEFAULT_TARGET` (a port-forward or a local run on another port).
TARGET_ENV = "MNIST_SERVE_GRPC_TARGET"
#: The biggest batch this client reads; the service refuses more than its own max_batch_images.
MAX_CLIENT_IMAGES = 65536


def read_digits(paths: Sequence[Path]) -> np.ndarray:
    """PNG/JPEG files and JSON bodies -> one (N, 1, 28, 28) batch, uint8 (raw) or float32 ([0, 1])."""
    from serve_app.inputs import decode_image_file, decode_payload, parse_json_body

    batches = []
    for path in paths:
        content = path.read_bytes()
        if path.suffix.lower() == ".json":
            batches.append(decode_payload(parse_json_body(content), MAX_CLIENT_IMAGES))
        else:
            batches.append(decode_image_file(content, path.name)[None])
    if any(batch.dtype != np.uint8 for batch in batches):
        batches = [batch.astype(np.float32) / 255 if batch.dtype == np.uint8 else batch for batch in batches]
    return np.concatenate(batches)


def predict_request(pixels: np.ndarray) -> mnist_pb2.PredictRequest:
    """A ``PredictRequest`` for (N, 1, 28, 28) pixels: ``raw`` bytes for uint8, ``scaled`` floats otherwise."""
    if pixels.dtype == np.uint8:
        return mnist_pb2.PredictRequest(raw=pixels.tobytes())
    return mnist_pb2.PredictRequest(scaled=mnist_pb2.ScaledPixels(values=pixels.ravel().tolist()))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    import grpc
    from google.protobuf.json_format import MessageToDict

    from serve_app.proto import mnist_pb2_grpc

    parser = argparse.ArgumentParser(prog="python -m serve_app.grpc_client", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="PNG/JPEG digits or JSON bodies ({'image': [...]})")
    parser.add_argument(
        "--target",
        default=os.environ.get(TARGET_ENV, DEFAULT_TARGET),
        help=f"host:port of the gRPC API (${TARGET_ENV}, else {DEFAULT_TARGET})",
    )
    parser.add_argument("--model", default=None, help="model id (default: the service's default model)")
    parser.add_argument("--application", default=APP_NAME, help=f"the Serve application ({APP_NAME})")
    parser.add_argument("--list-models", action="store_true", help="list the models instead of classifying")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (the first call may start a replica)")
    args = parser.parse_args(argv)
    if not args.files and not args.list_models:
        parser.error("give digit files to classify, or --list-models")
    metadata = call_metadata(args.model, args.application)
    try:
        request = None if args.list_models else predict_request(read_digits(args.files))
    except (OSError, ServeAppError) as error:
        print(f"cannot read the digits: {error}", file=sys.stderr)
        return 2
    with grpc.insecure_channel(args.target) as channel:
        stub = mnist_pb2_grpc.MnistStub(channel)
        try:
            if request is None:
                answer = stub.ListModels(mnist_pb2.ListModelsRequest(), timeout=args.timeout, metadata=metadata)
            else:
                answer = stub.Predict(request, timeout=args.timeout, metadata=metadata)
        except grpc.RpcError as error:
            print(f"{error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    fields = MessageToDict(answer, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    print(json.dumps(fields))
    return 0


if __name__ == "__main__":
    sys.exit(main())
