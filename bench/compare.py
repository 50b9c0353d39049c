r"""The whole graph against the tutorial's one-deployment app, plain FastAPI and KServe's model server, same load.

    python -m bench.compare                      # 8 s per point: 4 servers x {1, 64} digits x c 1, 8, 32, 64
    python -m bench.compare --servers graph kserve --encodings oip-json oip-binary oip-grpc   # OIP only
    python -m bench.compare --quick              # 2 s per point, for a smoke run
    python -m bench.compare --servers graph --variant proxy --variant haproxy --variant direct-ingress \
        --digits 1 --concurrency 1 32            # Serve's HTTP entries, the graph only
    python -m bench.compare --variant RAY_SERVE_ENABLE_DIRECT_INGRESS=1,RAY_SERVE_USE_GRPC_BY_DEFAULT=1
    python -m bench.compare --json /tmp/compare.json --plot /tmp/compare.png

Starts, one after another on this machine (never two at once), and drives each with wrk
(``POST /predict``, real MNIST test digits, the same bodies):

* **(a)** ``graph``: the project's whole graph from the one Serve config, on a local Ray, exactly as
  ``bench.graph`` starts it (Ingress -> Preprocessor -> Classifier, with the TaskConsumer and its
  Redis), once per ``--variant``: an HTTP entry (:mod:`serve_app.local.http_entry`: HAProxy by default,
  or Serve's proxy) and environment variables for every Ray process (set before Ray starts; presets
  in :data:`bench.servers.VARIANTS`). Requests go to the HTTP entry point Serve advertises in its
  ``target_groups``: HAProxy or the proxy on the HTTP port, the Ingress replica's own port in
  direct-ingress mode;
* **(b)** ``tutorial``: one Serve deployment with the model inside, as the tutorial's section 2
  builds it, Serve's defaults: its Python proxy, ``max_ongoing_requests`` 5 (:mod:`bench.tutorial_app`);
* **(c)** ``fastapi``: plain FastAPI under uvicorn, one worker, no Ray (:mod:`bench.fastapi_app`);
* **(d)** ``kserve``: KServe's Python model server (``kserve`` 0.21.0, in its own environment,
  ``.venv-kserve``, made on first use) serving the same model over the Open Inference Protocol,
  REST and gRPC, one process (:mod:`bench.kserve_app`).

Bodies (``--encodings``): JSON pixel lists to every server; for requests of more than one digit
also the ``numpy.save()`` bytes of the uint8 batch (``Content-Type: application/x-npy``, the compact
body for bulk clients) to (a) and (c); and the graph's gRPC API (``grpc``: ``mnist_serve.v1.Mnist/Predict``
with the uint8 pixels as ``raw`` bytes) to (a), driven by :mod:`bench.grpc_load` at the same
concurrency (a Python client: the table shows each load generator's own CPU use). The tutorial's
app (b) takes JSON only. The Open Inference Protocol's request (a UINT8 ``image`` tensor) goes to
(a) and (d): as JSON (``oip-json``), as the binary tensor data extension with raw outputs
(``oip-binary``, wrk with the ``Inference-Header-Content-Length`` header) and as a gRPC
``ModelInfer`` with raw contents (``oip-grpc``, :mod:`bench.grpc_load`, no call metadata, as an
OIP client sends none); those rows are compared with (d) over the same encoding.

Each server answers one real request per body first (the labels are checked), then a 2 s warm-up,
then ``--duration`` seconds per concurrency level. The raw model is timed in this process at batch 1
and 64, before the servers and after them (best of 3 runs each: this machine's noise only ever
lowers a figure). Prints one table (req/s and images/s count 2xx answers only; ratios at the same
digits per request and concurrency) and PASS/FAIL per target, writes a plot and, with ``--json``,
the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import requests

from bench.servers import REFERENCE_SERVERS, VARIANTS, Endpoints, graph_server, parse_variant
from bench.wrk import WrkResult
from serve_app.config import DEFAULT_MODEL_ID
from serve_app.grpc_api import SERVICE_NAME, call_metadata
from serve_app.oip import HEADER_LENGTH

SERVERS = ("graph", "tutorial", "fastapi", "kserve")
SERVER_LABELS = {
    "graph": "(a) whole graph",
    "tutorial": "(b) tutorial app: Serve's proxy, max_ongoing_requests 5",
    "fastapi": "(c) FastAPI/uvicorn",
    "kserve": "(d) KServe model server",
}
DEFAULT_DIGITS = (1, 64)
#: Request body encodings (``--encodings``) and their content types: JSON pixel lists,
#: ``numpy.save()`` bytes, a gRPC ``PredictRequest`` with raw uint8 pixels; and the Open Inference
#: Protocol's request (a UINT8 [N, 28, 28] ``image`` tensor) as JSON, as the binary tensor data
#: extension (raw pixels in, raw outputs out), and as a gRPC ``ModelInferRequest`` (raw contents).
ENCODINGS = {
    "json": "application/json",
    "npy": "application/x-npy",
    "grpc": "application/grpc",
    "oip-json": "application/json",
    "oip-binary": "application/octet-stream",
    "oip-grpc": "application/grpc",
}
OIP_ENCODINGS = ("oip-json", "oip-binary", "oip-grpc")
GRPC_ENCODINGS = ("grpc", "oip-grpc")
#: The servers that take each encoding. The ``.npy`` body is the compact HTTP body for bulk
#: clients: it is sent only with more than one digit. Only the graph has the project's gRPC API;
#: the graph and KServe's model server speak the Open Inference Protocol, and only it.
ENCODING_SERVERS = {
    "json": ("graph", "tutorial", "fastapi"),
    "npy": ("graph", "fastapi"),
    "grpc": ("graph",),
    **{encoding: ("graph", "kserve") for encoding in OIP_ENCODINGS},
}
#: The gRPC method each gRPC encoding calls.
GRPC_METHODS = {"grpc": f"/{SERVICE_NAME}/Predict", "oip-grpc": "/inference.GRPCInferenceService/ModelInfer"}
DEFAULT_CONCURRENCY = (1, 8, 32, 64)
DEFAULT_DURATION_S = 8
QUICK_DURATION_S = 2
RAW_BATCH = 64
#: Runs of the raw model per batch size, before and after the servers; the table keeps the best.
RAW_REPEATS = 3


#: How the table names a body encoding.
ENCODING_WORDS = {
    "json": "JSON body",
    "npy": ".npy body",
    "grpc": "gRPC, raw bytes",
    "oip-json": "OIP, JSON",
    "oip-binary": "OIP, binary tensors",
    "oip-grpc": "OIP gRPC, raw contents",
}


@dataclass(frozen=True)
class Point:
    """One wrk run against one server with one body size."""

    server: str
    variant: str
    digits: int
    result: WrkResult
    encoding: str = "json"

    @property
    def label(self) -> str:
        """The server's name in the table (with the variant, and the body when it is not JSON)."""
        base = SERVER_LABELS.get(self.server, self.server)
        label = base if self.variant == "default" else f"{base}, {self.variant}"
        return f"{label}, {ENCODING_WORDS[self.encoding]}" if self.encoding != "json" else label

    @property
    def concurrency(self) -> int:
        """Connections (wrk's ``-c``)."""
        return self.result.connections

    @property
    def ok_per_s(self) -> float:
        """2xx answers per second."""
        ok = max(0, self.result.requests - self.result.non_2xx)
        return ok / self.result.seconds if self.result.seconds else 0.0

    @property
    def images_per_s(self) -> float:
        """Images classified per second (2xx answers x digits per request)."""
        return self.ok_per_s * self.digits

    @property
    def errors(self) -> int:
        """Socket errors, timeouts and non-2xx answers."""
        return self.result.errors + self.result.non_2xx


def ratio(numerator: float, denominator: float) -> float | None:
    """The quotient; ``inf`` over a zero denominator, None when both are zero."""
    if denominator > 0:
        return numerator / denominator
    return math.inf if numerator > 0 else None


def time_raw_model(
    timer: Callable[[int, float], float], batches: Sequence[int], repeats: int = RAW_REPEATS, seconds: float = 2.0
) -> dict[int, float]:
    """Images/s of the raw model per batch size: the best of ``repeats`` runs (noise only ever lowers one)."""
    return {batch: max(timer(batch, seconds) for _ in range(repeats)) for batch in batches}


def higher_of(first: Mapping[int, float], second: Mapping[int, float]) -> dict[int, float]:
    """Per batch size, the higher of two timings (a busy machine only ever lowers one)."""
    return {key: max(first[key], second.get(key, 0.0)) for key in first}


def format_cores(cores: float | None) -> str:
    """A load generator's CPU use, e.g. ``0.12``; ``-`` when unknown."""
    return "-" if cores is None else f"{cores:.2f}"


def format_ratio(value: float | None) -> str:
    """``1.23x``, ``inf``, or ``-``."""
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.2f}x"


def find_point(
    points: Sequence[Point],
    server: str,
    digits: int,
    concurrency: int,
    variant: str = "default",
    encoding: str = "json",
) -> Point | None:
    """The point of one server (and variant) at one body size, encoding and concurrency, if measured."""
    wanted = (server, variant, digits, concurrency, encoding)
    for point in points:
        if (point.server, point.variant, point.digits, point.concurrency, point.encoding) == wanted:
            return point
    return None


def reference_encoding(encoding: str, server: str = "fastapi") -> str:
    """The encoding of ``server`` to compare a graph point of ``encoding`` with.

    The same encoding where ``server`` takes it; else JSON (the project's gRPC API, which only the
    graph serves, against the way (b) and (c) take the same request). KServe's model server is
    compared over the Open Inference Protocol only.
    """
    if server in ENCODING_SERVERS.get(encoding, ()):
        return encoding
    return "json" if encoding == "grpc" and server in ENCODING_SERVERS["json"] else ""


def ratio_to(points: Sequence[Point], point: Point, server: str) -> float | None:
    """``point``'s images/s over ``server``'s (default variant) at the same digits, body and concurrency.

    Points are compared over :func:`reference_encoding` (gRPC with JSON for (b) and (c)); None where
    ``server`` takes no comparable request.
    """
    encoding = reference_encoding(point.encoding, server)
    if point.server == server or not encoding:
        return None
    other = find_point(points, server, point.digits, point.concurrency, encoding=encoding)
    return ratio(point.images_per_s, other.images_per_s) if other else None


def format_table(points: Sequence[Point], raw: Mapping[int, float]) -> str:
    """The benchmark's table, in Markdown: one row per point, then the raw model."""
    lines = [
        "| server | digits/request | concurrency | req/s | images/s | p50 ms | p99 ms | errors | vs (b) | vs (c) "
        "| vs (d) | of raw model | client cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for point in points:
        of_raw = ratio(point.images_per_s, raw[point.digits]) if point.digits in raw else None
        lines.append(
            f"| {point.label} | {point.digits} | {point.concurrency} | {point.ok_per_s:,.0f} | "
            f"{point.images_per_s:,.0f} | {point.result.p50_ms:.1f} | {point.result.p99_ms:.1f} | {point.errors} | "
            f"{format_ratio(ratio_to(points, point, 'tutorial'))} | {format_ratio(ratio_to(points, point, 'fastapi'))} "
            f"| {format_ratio(ratio_to(points, point, 'kserve'))} "
            f"| {'-' if of_raw is None else f'{of_raw:.1%}'} | {format_cores(point.result.client_cores)} |"
        )
    for batch, images_per_s in sorted(raw.items()):
        lines.append(
            f"| raw model in-process, batch {batch} | {batch} | - | - | {images_per_s:,.0f} | - | - | - | - | - | - "
            "| - | - |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """One target of the issue, checked on the measured figures."""

    variant: str
    name: str
    measured: float | None
    threshold: float
    detail: str

    @property
    def verdict(self) -> str:
        """PASS, FAIL, or n/a when a figure it needs was not measured."""
        if self.measured is None:
            return "n/a"
        return "PASS" if self.measured >= self.threshold else "FAIL"


def evaluate_targets(points: Sequence[Point], raw: Mapping[int, float]) -> list[Target]:
    """The targets, for every graph variant measured.

    * single digit at concurrency 32: the graph >= 1.0x (b) and >= 25 % of (c) (images/s, 2xx only),
      over JSON, and over gRPC when measured (against the JSON figures of (b) and (c));
    * 64-digit requests: the graph's best images/s over the measured concurrencies >= 50 % of the
      raw model's in-process images/s at batch 64, once per body encoding measured;
    * the Open Inference Protocol, per encoding measured: single digits at concurrency 32 >= 1.0x
      KServe's model server (d), and 64-digit binary requests at concurrency 32 >= 1.0x (d).
    """
    targets: list[Target] = []
    variants = list(dict.fromkeys(p.variant for p in points if p.server == "graph"))
    for variant in variants:
        graph = [p for p in points if p.server == "graph" and p.variant == variant]
        single = [p.encoding for p in graph if p.digits == 1 and p.encoding not in OIP_ENCODINGS]
        for encoding in dict.fromkeys(["json", *single]):
            targets += single_digit_targets(points, variant, encoding)
        bulk = [p for p in graph if p.digits == RAW_BATCH and p.encoding not in OIP_ENCODINGS]
        for encoding in dict.fromkeys(["json", *(p.encoding for p in bulk)]):
            targets.append(bulk_target(variant, encoding, [p for p in bulk if p.encoding == encoding], raw))
        for encoding in dict.fromkeys(p.encoding for p in graph if p.encoding in OIP_ENCODINGS):
            targets.append(kserve_target(points, variant, encoding, 1))
        if any(p.encoding == "oip-binary" and p.digits == RAW_BATCH for p in graph):
            targets.append(kserve_target(points, variant, "oip-binary", RAW_BATCH))
    return targets


def kserve_target(points: Sequence[Point], variant: str, encoding: str, digits: int) -> Target:
    """The graph over the Open Inference Protocol vs KServe's model server, same encoding, concurrency 32."""
    graph = find_point(points, "graph", digits, 32, variant, encoding)
    other = find_point(points, "kserve", digits, 32, encoding=encoding)
    measured = ratio(graph.images_per_s, other.images_per_s) if graph and other else None
    detail = f"{graph.images_per_s:,.0f} vs {other.images_per_s:,.0f} images/s" if graph and other else "not measured"
    name = f"{digits} digit{'' if digits == 1 else 's'}, {ENCODING_WORDS[encoding]}, concurrency 32: >= 1.0x (d)"
    return Target(variant, name, measured, 1.0, detail)


def single_digit_targets(points: Sequence[Point], variant: str, encoding: str) -> list[Target]:
    """Single digits at concurrency 32 in one encoding: the graph vs (b) and vs (c)."""
    graph = find_point(points, "graph", 1, 32, variant, encoding)
    over = "" if encoding == "json" else f", {ENCODING_WORDS[encoding]}"
    targets = []
    for server, threshold, wording in (("tutorial", 1.0, ">= 1.0x (b)"), ("fastapi", 0.25, ">= 25% of (c)")):
        other = find_point(points, server, 1, 32, encoding=reference_encoding(encoding))
        measured = ratio(graph.images_per_s, other.images_per_s) if graph and other else None
        detail = (
            f"{graph.images_per_s:,.0f} vs {other.images_per_s:,.0f} images/s" if graph and other else "not measured"
        )
        targets.append(Target(variant, f"1 digit{over}, concurrency 32: {wording}", measured, threshold, detail))
    return targets


def bulk_target(variant: str, encoding: str, bulk: Sequence[Point], raw: Mapping[int, float]) -> Target:
    """64-digit requests in one encoding: the best images/s over the concurrencies vs the raw model's."""
    best = max(bulk, key=lambda p: p.images_per_s, default=None)
    if best is not None and RAW_BATCH in raw:
        measured: float | None = ratio(best.images_per_s, raw[RAW_BATCH])
        detail = f"best {best.images_per_s:,.0f} images/s (concurrency {best.concurrency}) vs raw {raw[RAW_BATCH]:,.0f}"
    else:
        measured, detail = None, "not measured"
    name = f"{RAW_BATCH} digits, {ENCODING_WORDS[encoding]}: >= 50% of the raw model at batch {RAW_BATCH}"
    return Target(variant, name, measured, 0.5, detail)


def format_targets(targets: Sequence[Target]) -> str:
    """One line per target: verdict, what, the ratio and the figures behind it."""
    lines = []
    for target in targets:
        where = "(a) whole graph" if target.variant == "default" else f"(a) whole graph, {target.variant}"
        lines.append(f"{target.verdict:4}  {where}, {target.name}: {format_ratio(target.measured)} ({target.detail})")
    return "\n".join(lines)


def request_body(digits: int, examples: Sequence[Sequence[Sequence[int]]], encoding: str = "json") -> bytes:
    """A body of ``digits`` real digits (the ten shipped ones, cycled).

    ``{"image": [...]}`` as JSON bytes, the uint8 (N, 28, 28) array as ``numpy.save()`` bytes
    (``encoding="npy"``), or a serialised gRPC ``PredictRequest`` with those pixels as ``raw`` bytes
    (``encoding="grpc"``).
    """
    images = [examples[i % len(examples)] for i in range(digits)]
    if encoding in OIP_ENCODINGS:
        return oip_request_body(np.asarray(images, dtype=np.uint8), encoding)
    if encoding == "grpc":
        from serve_app.proto.mnist_pb2 import PredictRequest

        return PredictRequest(raw=np.asarray(images, dtype=np.uint8).tobytes()).SerializeToString()
    if encoding == "npy":
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(images, dtype=np.uint8), allow_pickle=False)
        return buffer.getvalue()
    if encoding != "json":
        raise ValueError(f"unknown body encoding {encoding!r}; expected one of {list(ENCODINGS)}")
    return json.dumps({"image": images}).encode()


def oip_request_body(images: np.ndarray, encoding: str) -> bytes:
    """An Open Inference Protocol request for uint8 (N, 28, 28) ``images``: a UINT8 ``image`` tensor.

    ``oip-json``: JSON data; ``oip-binary``: the binary tensor data extension, raw pixels after the
    JSON and every output asked for as raw bytes (``binary_data_output``); ``oip-grpc``: a serialised
    ``ModelInferRequest`` with the pixels in ``raw_input_contents``.
    """
    tensor: dict[str, Any] = {"name": "image", "datatype": "UINT8", "shape": list(images.shape)}
    if encoding == "oip-grpc":
        from serve_app.proto.inference_pb2 import ModelInferRequest

        message = ModelInferRequest(model_name=DEFAULT_MODEL_ID)
        message.inputs.add(**tensor)
        message.raw_input_contents.append(images.tobytes())
        return message.SerializeToString()
    if encoding == "oip-json":
        return json.dumps({"inputs": [{**tensor, "data": images.ravel().tolist()}]}).encode()
    raw = images.tobytes()
    header = {"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]}
    return json.dumps({**header, "parameters": {"binary_data_output": True}}).encode() + raw


def json_part_length(body: bytes) -> int:
    """The length in bytes of the JSON object a body starts with (what ``Inference-Header-Content-Length`` says)."""
    _, end = json.JSONDecoder().raw_decode(body.decode("latin-1"))  # one character per byte
    return end


def request_headers(encoding: str, body: bytes) -> dict[str, str]:
    """The headers a body needs besides its content type: the JSON's length for the binary extension."""
    return {HEADER_LENGTH: str(json_part_length(body))} if encoding == "oip-binary" else {}


#: One request body: its bytes and the true labels of its digits (keyed by digits and encoding).
Body = tuple[bytes, list[int]]


def request_bodies(
    digits: Sequence[int], encodings: Sequence[str], examples: Sequence[Sequence[Sequence[int]]], labels: Sequence[int]
) -> dict[tuple[int, str], Body]:
    """Every (digits, encoding) body: JSON and gRPC always, ``.npy`` for more than one digit (bulk)."""
    return {
        (count, encoding): (request_body(count, examples, encoding), expected_labels(count, labels))
        for count in digits
        for encoding in encodings
        if encoding != "npy" or count > 1
    }


def expected_labels(digits: int, labels: Sequence[int]) -> list[int]:
    """The labels of :func:`request_body`'s digits."""
    return [int(labels[i % len(labels)]) for i in range(digits)]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; ``--quick`` is ``--duration 2`` unless a duration is given."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS), help="which servers to run")
    parser.add_argument(
        "--variant",
        dest="variants",
        action="append",
        type=parse_variant,
        default=None,
        metavar="NAME|KEY=VALUE[,...]",
        help=f"environment of the graph's Ray (repeatable); presets: {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--digits",
        nargs="+",
        type=_positive_int,
        default=list(DEFAULT_DIGITS),
        help="digits per request (one body each)",
    )
    parser.add_argument(
        "--encodings",
        nargs="+",
        choices=list(ENCODINGS),
        default=list(ENCODINGS),
        help="request bodies: JSON, and numpy.save() bytes for requests of more than one digit (graph and FastAPI)",
    )
    parser.add_argument("--concurrency", nargs="+", type=_positive_int, default=list(DEFAULT_CONCURRENCY))
    parser.add_argument(
        "--duration", type=_positive_int, default=None, help=f"seconds per point (default {DEFAULT_DURATION_S})"
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_DURATION_S} s per point")
    parser.add_argument("--plot", type=Path, default=Path("docs/figures/compare.png"))
    parser.add_argument("--no-plot", action="store_true", help="write no plot")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--replot", type=Path, default=None, metavar="JSON", help="redraw the plot from a --json file; run nothing"
    )
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = QUICK_DURATION_S if args.quick else DEFAULT_DURATION_S
    if args.variants is None:
        args.variants = [parse_variant("default")]
    names = [v.name for v in args.variants]
    if len(set(names)) != len(names):
        parser.error(f"--variant given twice: {names}")
    return args


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be >= 1")
    return value


# --- driving the servers (bench.servers starts them; wrk, gRPC: not unit-tested) ----------------------


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def grpc_answer_labels(target: str, encoding: str, body: bytes, timeout_s: float = 120) -> list[int]:
    """The labels of one gRPC call with a serialised request: ``Predict``, or the protocol's ``ModelInfer``."""
    import grpc

    with grpc.insecure_channel(target) as channel:
        if encoding == "oip-grpc":
            from serve_app.proto.inference_pb2 import ModelInferRequest
            from serve_app.proto.inference_pb2_grpc import GRPCInferenceServiceStub

            answer = GRPCInferenceServiceStub(channel).ModelInfer(ModelInferRequest.FromString(body), timeout=timeout_s)
            names = [output.name for output in answer.outputs]
            return np.frombuffer(answer.raw_output_contents[names.index("label")], dtype="<i8").tolist()
        from serve_app.proto.mnist_pb2 import PredictRequest
        from serve_app.proto.mnist_pb2_grpc import MnistStub

        request = PredictRequest.FromString(body)
        return list(MnistStub(channel).Predict(request, timeout=timeout_s, metadata=call_metadata()).predicted_label)


def oip_answer_labels(response: requests.Response) -> list[int]:
    """The ``label`` output of an OIP answer: JSON data, or raw bytes after the JSON (binary extension)."""
    header_length = response.headers.get(HEADER_LENGTH)
    content = response.content
    answer = json.loads(content[: int(header_length)] if header_length else content)
    offset = int(header_length or 0)
    for output in answer["outputs"]:
        size = int((output.get("parameters") or {}).get("binary_data_size", 0))
        if output["name"] == "label":
            if "data" in output:
                return [int(label) for label in output["data"]]
            return np.frombuffer(content[offset : offset + size], dtype="<i8").tolist()
        offset += size
    raise RuntimeError(f"no label output in {answer}")


def target_url(endpoints: Endpoints, encoding: str) -> str:
    """The URL a body of ``encoding`` goes to: ``/predict``, or the default model's OIP ``infer``."""
    return endpoints.infer_url if encoding in OIP_ENCODINGS else endpoints.predict_url


def check_answer(endpoints: Endpoints, encoding: str, body: bytes, labels: list[int], timeout_s: float = 120) -> None:
    """One request; its labels must be the digits' true labels (the first one may wait for a replica)."""
    if encoding in GRPC_ENCODINGS:
        if endpoints.grpc_target is None:
            raise RuntimeError("this server has no gRPC API")
        answered = grpc_answer_labels(endpoints.grpc_target, encoding, body, timeout_s)
    else:
        url = target_url(endpoints, encoding)
        headers = {"Content-Type": ENCODINGS[encoding], **request_headers(encoding, body)}
        response = requests.post(url, data=body, headers=headers, timeout=timeout_s)
        response.raise_for_status()
        if encoding in OIP_ENCODINGS:
            answered = oip_answer_labels(response)
        else:
            answer = response.json()
            answered = answer["predicted_label"] if len(answer["probabilities"]) == len(labels) else []
    if answered != labels:
        raise RuntimeError(f"{endpoints.base_url} ({encoding}) answered labels {answered}, expected {labels}")


def measure(
    server: str,
    variant: str,
    endpoints: Endpoints,
    bodies: Mapping[tuple[int, str], Body],
    concurrency: Sequence[int],
    duration_s: int,
) -> list[Point]:
    """Check, warm up and drive one server with every body it accepts at every concurrency."""
    points = []
    for (digits, encoding), (body, labels) in bodies.items():
        if server not in ENCODING_SERVERS[encoding]:
            continue
        drive = load_driver(endpoints, encoding, body, labels)
        drive(8, 2)  # warm-up
        for connections in concurrency:
            result = drive(connections, duration_s)
            point = Point(server, variant, digits, result, encoding)
            _log(
                f"  {point.label}: {digits} digit{'' if digits == 1 else 's'}, c={connections}: "
                f"{point.ok_per_s:,.0f} req/s, p50 {point.result.p50_ms:.1f} ms, {point.errors} errors"
            )
            points.append(point)
    return points


def load_driver(
    endpoints: Endpoints, encoding: str, body: bytes, labels: list[int]
) -> Callable[[int, float], WrkResult]:
    """Check one answer, then return ``drive(connections, seconds)``: wrk for HTTP, :mod:`bench.grpc_load` for gRPC."""
    from bench.grpc_load import run_grpc_load
    from bench.wrk import run_wrk

    check_answer(endpoints, encoding, body, labels)
    if encoding in GRPC_ENCODINGS:
        target, method = str(endpoints.grpc_target), GRPC_METHODS[encoding]
        # the project's API names its application; an OIP client (Triton's, KServe's) sends no metadata
        metadata = call_metadata() if encoding == "grpc" else []
        return lambda connections, seconds: run_grpc_load(target, method, body, connections, seconds, 10, metadata)
    url, content_type, headers = target_url(endpoints, encoding), ENCODINGS[encoding], request_headers(encoding, body)
    return lambda connections, seconds: run_wrk(
        url, body, connections, seconds, content_type=content_type, headers=headers
    )


#: One colour family per server, one shade per body: the lines of a server read as one group.
SERVER_COLOURMAPS = {"graph": "Blues", "tutorial": "Oranges", "fastapi": "Greens", "kserve": "Reds"}
#: One line style per body, the same for every server.
ENCODING_STYLES = {
    "json": "-",
    "npy": (0, (1, 1)),
    "grpc": "-.",
    "oip-json": (0, (5, 1)),
    "oip-binary": (0, (3, 1, 1, 1, 1, 1)),
    "oip-grpc": (0, (1, 2, 5, 2)),
}


def line_colours(points: Sequence[Point]) -> dict[str, Any]:
    """A colour per line label: the server's colour family, a darker shade per further body."""
    import matplotlib

    colours: dict[str, Any] = {}
    for server, colourmap in SERVER_COLOURMAPS.items():
        labels = list(dict.fromkeys(p.label for p in points if p.server == server))
        shades = matplotlib.colormaps[colourmap]
        for index, label in enumerate(labels):
            colours[label] = shades(0.45 + 0.5 * index / max(1, len(labels) - 1))
    return colours


def plot(points: Sequence[Point], raw: Mapping[int, float], path: Path) -> None:
    """Images/s and p50/p99 against concurrency, one column per body size; legends beside the plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({p.digits for p in points})
    figure, axes = plt.subplots(2, len(sizes), figsize=(7 * len(sizes) + 4, 10), squeeze=False)
    labels = list(dict.fromkeys(p.label for p in points))
    colours = line_colours(points)
    for column, digits in enumerate(sizes):
        throughput, latency = axes[0][column], axes[1][column]
        for label in labels:
            runs = [p for p in points if p.label == label and p.digits == digits]
            if not runs:
                continue
            levels = [p.concurrency for p in runs]
            style = {"color": colours.get(label), "linestyle": ENCODING_STYLES.get(runs[0].encoding, "-")}
            throughput.plot(levels, [p.images_per_s for p in runs], marker="o", label=label, **style)
            latency.plot(levels, [p.result.p50_ms for p in runs], marker="o", label=f"{label}: p50", **style)
            latency.plot(levels, [p.result.p99_ms for p in runs], marker="x", alpha=0.5, **style)
        if digits in raw:
            throughput.axhline(raw[digits], color="grey", linestyle=":", label=f"raw model in-process, batch {digits}")
        throughput.set_title(f"{digits} digit{'' if digits == 1 else 's'} per request")
        throughput.set_ylabel("images/s (2xx answers)")
        throughput.set_yscale("log")
        latency.set_ylabel("latency, ms (o: p50, x: p99)")
        latency.set_yscale("log")
        for axis in (throughput, latency):
            axis.set_xscale("log", base=2)
            axis.set_xlabel("concurrent connections (wrk)")
            axis.grid(True, alpha=0.3)
    legend: dict[str, Any] = {}
    for axis in axes[0]:
        handles, names = axis.get_legend_handles_labels()
        legend.update((name, handle) for name, handle in zip(names, handles, strict=True) if name not in legend)
    figure.legend(list(legend.values()), list(legend), fontsize=8, loc="center right")
    figure.suptitle(
        "The whole graph vs one Serve deployment, plain FastAPI and KServe's model server (same model, same digits)"
    )
    figure.tight_layout(rect=(0, 0, 0.74, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def read_figures(path: Path) -> tuple[list[Point], dict[int, float]]:
    """The points and raw-model figures of a ``--json`` file, as the run had them."""
    figures = json.loads(path.read_text())
    result_fields = set(WrkResult.__dataclass_fields__)
    points = [
        Point(
            server=point["server"],
            variant=point["variant"],
            digits=point["digits"],
            encoding=point["encoding"],
            result=WrkResult(**{key: value for key, value in point.items() if key in result_fields}),
        )
        for point in figures["points"]
    ]
    return points, {int(digits): value for digits, value in figures["raw_images_per_s"].items()}


def main(argv: Sequence[str] | None = None) -> None:
    """Run every server in turn, print the table and the targets, write the plot."""
    args = parse_args(argv)
    if args.replot is not None:
        points, raw = read_figures(args.replot)
        plot(points, raw, args.plot)
        print(f"plot: {args.plot}")
        return
    from bench.graph import machine_description, raw_model_images_per_s
    from bench.wrk import require_wrk
    from serve_app.training.examples import load_examples

    require_wrk()
    images, labels = load_examples()
    examples = images.tolist()
    bodies = request_bodies(args.digits, args.encodings, examples, labels.tolist())
    machine = machine_description()
    batches = sorted({1, RAW_BATCH, *args.digits})
    _log("timing the raw model in-process ...")
    raw_before = time_raw_model(raw_model_images_per_s, batches)

    points: list[Point] = []
    for server in args.servers:
        runs = (
            [(v.name, lambda v=v: graph_server(v)) for v in args.variants]
            if server == "graph"
            else [("default", REFERENCE_SERVERS[server])]
        )
        for variant, start in runs:
            _log(f"starting {SERVER_LABELS[server]} [{variant}] ...")
            with start() as endpoints:
                points += measure(server, variant, endpoints, bodies, args.concurrency, args.duration)
            time.sleep(2)  # let the last server's processes go before the next one starts
    _log("timing the raw model in-process again ...")
    raw_after = time_raw_model(raw_model_images_per_s, batches)
    raw = higher_of(raw_before, raw_after)

    print(
        f"\nmachine: {machine}, Ray {version('ray')}, Python {platform.python_version()}; wrk on the same cores "
        f"({args.duration} s per point, -t1 below 16 connections, -t2 from 16), real MNIST test digits"
    )
    print(
        "(a) the project's Serve config as is; (b) one @serve.deployment(), Serve defaults: 1 replica, "
        "max_ongoing_requests 5, 1 CPU (the tutorial's section 2 sets none); (c) uvicorn, 1 worker, no Ray"
    )
    for variant in args.variants:
        if variant.env and "graph" in args.servers:
            print(f"variant {variant.name}: {variant.env}")
    print(
        f"raw model: the served artefact called in this process on normalised real digits; best of {RAW_REPEATS} "
        "2 s runs before the servers / after them (the table keeps the higher): "
        + ", ".join(f"batch {b}: {raw_before[b]:,.0f} / {raw_after[b]:,.0f} images/s" for b in batches)
    )
    print(
        "req/s and images/s count 2xx answers; errors = socket errors + timeouts + non-2xx; "
        "vs (b) / vs (c): images/s ratio at the same digits and concurrency\n"
    )
    print(format_table(points, raw))
    print()
    print(format_targets(evaluate_targets(points, raw)))
    if not args.no_plot and points:
        plot(points, raw, args.plot)
        print(f"\nplot: {args.plot}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "duration_s": args.duration,
                    "variants": {v.name: v.ray_env() for v in args.variants},
                    "raw_images_per_s": raw,
                    "raw_images_per_s_before": raw_before,
                    "raw_images_per_s_after": raw_after,
                    "points": [
                        {
                            "server": p.server,
                            "variant": p.variant,
                            "digits": p.digits,
                            "encoding": p.encoding,
                            **asdict(p.result),
                            "ok_per_s": p.ok_per_s,
                            "images_per_s": p.images_per_s,
                        }
                        for p in points
                    ],
                    "targets": [{**asdict(t), "verdict": t.verdict} for t in evaluate_targets(points, raw)],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
