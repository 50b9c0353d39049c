import io
import json
import math
import os

import numpy as np
import pytest

from bench.compare import (
    DEFAULT_CONCURRENCY,
    Point,
    evaluate_targets,
    expected_labels,
    format_ratio,
    format_table,
    format_targets,
    higher_of,
    json_part_length,
    oip_answer_labels,
    parse_args,
    ratio,
    request_bodies,
    request_body,
    request_headers,
    target_url,
    time_raw_model,
)
from bench.pythonpath import with_pythonpath
from bench.servers import VARIANTS, Endpoints, entry_port, expects_direct_ingress, parse_variant
from bench.wrk import WrkResult
from serve_app.config import DEFAULT_MODEL_ID
from serve_app.local.http_entry import ENTRY_VARIABLES
from serve_app.oip import HEADER_LENGTH
from serve_app.training.examples import load_examples


def _point(
    server, digits, concurrency, requests, variant="default", non_2xx=0, errors=0, seconds=10.0, encoding="json"
):
    result = WrkResult(
        connections=concurrency,
        requests=requests,
        seconds=seconds,
        p50_ms=5.0,
        p90_ms=8.0,
        p99_ms=20.0,
        max_ms=30.0,
        errors=errors,
        non_2xx=non_2xx,
    )
    return Point(server, variant, digits, result, encoding)


# --- arguments ---------------------------------------------------------------------------------------


def test_defaults_are_the_issue_s_grid():
    args = parse_args([])
    assert args.servers == ["graph", "tutorial", "fastapi", "kserve"]
    assert args.digits == [1, 64]
    assert args.encodings == ["json", "npy", "grpc", "oip-json", "oip-binary", "oip-grpc"]
    assert args.concurrency == list(DEFAULT_CONCURRENCY) == [1, 8, 32, 64]
    assert args.duration == 8
    assert [v.name for v in args.variants] == ["default"] and args.variants[0].env == {}
    assert args.variants[0].http_entry is None  # the project's default entry
    assert str(args.plot) == "docs/figures/compare.png" and args.json is None


def test_quick_is_short_unless_a_duration_is_given():
    assert parse_args(["--quick"]).duration == 2
    assert parse_args(["--quick", "--duration", "5"]).duration == 5
    assert parse_args(["--duration", "3"]).duration == 3


def test_variants_presets_and_custom_environments(monkeypatch):
    monkeypatch.delenv("MNIST_SERVE_HTTP_ENTRY", raising=False)
    args = parse_args(["--servers", "graph", "--variant", "proxy", "--variant", "haproxy", "--variant", "A_B=1,C=x"])
    assert [v.name for v in args.variants] == ["proxy", "haproxy", "A_B=1,C=x"]
    assert [v.http_entry for v in args.variants] == ["proxy", "haproxy", None]
    assert args.variants[0].ray_env() == {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}
    haproxy = ENTRY_VARIABLES["haproxy"]
    assert args.variants[1].ray_env() == haproxy
    assert args.variants[2].env == {"A_B": "1", "C": "x"}
    assert args.variants[2].ray_env() == {**haproxy, "A_B": "1", "C": "x"}
    # a variant's own variables win over its entry's
    assert parse_variant("direct-ingress").ray_env() == {
        "RAY_SERVE_ENABLE_HA_PROXY": "0",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
    }
    assert set(VARIANTS) >= {"default", "proxy", "haproxy", "direct-ingress"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--concurrency", "0"],
        ["--digits", "-1"],
        ["--duration", "0"],
        ["--servers", "nginx"],
        ["--variant", "no-such-preset"],
        ["--variant", "=1"],
        ["--variant", "haproxy", "--variant", "haproxy"],
        ["--encodings", "msgpack"],
    ],
)
def test_bad_arguments_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)


# --- figures, ratios, table --------------------------------------------------------------------------


def test_throughput_counts_2xx_answers_and_images():
    point = _point("graph", 64, 8, requests=110, non_2xx=10, errors=3)
    assert point.ok_per_s == pytest.approx(10.0)
    assert point.images_per_s == pytest.approx(640.0)
    assert point.errors == 13
    assert point.label == "(a) whole graph"
    assert _point("graph", 1, 1, 1, variant="haproxy").label == "(a) whole graph, haproxy"


def test_raw_model_figure_is_the_higher_timing():
    assert higher_of({1: 3000.0, 64: 4000.0}, {1: 3500.0, 64: 2000.0}) == {1: 3500.0, 64: 4000.0}


def test_raw_model_timing_keeps_the_best_run():
    runs = iter([100.0, 300.0, 200.0, 50.0, 40.0, 60.0])
    calls = []

    def timer(batch, seconds):
        calls.append((batch, seconds))
        return next(runs)

    assert time_raw_model(timer, [1, 64], repeats=3, seconds=0.5) == {1: 300.0, 64: 60.0}
    assert calls == [(1, 0.5)] * 3 + [(64, 0.5)] * 3


def test_ratio_edges():
    assert ratio(3, 2) == 1.5
    assert ratio(1, 0) == math.inf
    assert ratio(0, 0) is None
    assert (format_ratio(1.5), format_ratio(math.inf), format_ratio(None)) == ("1.50x", "inf", "-")


def test_table_ratios_are_to_b_and_c_at_the_same_digits_and_concurrency():
    points = [
        _point("graph", 1, 32, 1000),
        _point("tutorial", 1, 32, 500),
        _point("fastapi", 1, 32, 4000),
        _point("graph", 64, 32, 100),
    ]
    table = format_table(points, {1: 4000.0, 64: 12800.0})
    lines = table.splitlines()
    assert lines[0].startswith("| server | digits/request | concurrency | req/s | images/s | p50 ms | p99 ms | errors")
    assert "| (a) whole graph | 1 | 32 | 100 | 100 | 5.0 | 20.0 | 0 | 2.00x | 0.25x | - | 2.5% | - |" in lines
    tutorial = "| (b) tutorial app: Serve's proxy, max_ongoing_requests 5 |"
    assert f"{tutorial} 1 | 32 | 50 | 50 | 5.0 | 20.0 | 0 | - | 0.12x | - | 1.2% | - |" in lines
    assert "| (c) FastAPI/uvicorn | 1 | 32 | 400 | 400 | 5.0 | 20.0 | 0 | 8.00x | - | - | 10.0% | - |" in lines
    # no (b) or (c) at 64 digits: no ratio; 10 req/s x 64 = 640 images/s = 5 % of the raw model
    assert "| (a) whole graph | 64 | 32 | 10 | 640 | 5.0 | 20.0 | 0 | - | - | - | 5.0% | - |" in lines
    assert "| raw model in-process, batch 64 | 64 | - | - | 12,800 | - | - | - | - | - | - | - | - |" in lines


def test_npy_points_are_compared_with_npy_points_only():
    points = [
        _point("graph", 64, 8, 100),
        _point("fastapi", 64, 8, 400),
        _point("graph", 64, 8, 200, encoding="npy"),
        _point("fastapi", 64, 8, 800, encoding="npy"),
    ]
    lines = format_table(points, {64: 12800.0}).splitlines()
    assert "| (a) whole graph, .npy body | 64 | 8 | 20 | 1,280 | 5.0 | 20.0 | 0 | - | 0.25x | - | 10.0% | - |" in lines
    assert "| (c) FastAPI/uvicorn, .npy body | 64 | 8 | 80 | 5,120 | 5.0 | 20.0 | 0 | - | - | - | 40.0% | - |" in lines
    assert "| (a) whole graph | 64 | 8 | 10 | 640 | 5.0 | 20.0 | 0 | - | 0.25x | - | 5.0% | - |" in lines


# --- targets -----------------------------------------------------------------------------------------


def _targets(graph_rps_1, graph_rps_64, variant="default"):
    points = [
        _point("graph", 1, 32, graph_rps_1 * 10, variant=variant),
        _point("tutorial", 1, 32, 1000),
        _point("fastapi", 1, 32, 4000),
        _point("graph", 64, 8, graph_rps_64 * 10, variant=variant),
        _point("graph", 64, 32, graph_rps_64 * 5, variant=variant),
    ]
    return {t.name: t for t in evaluate_targets(points, {64: 6400.0})}


def test_targets_pass_at_their_thresholds():
    targets = _targets(graph_rps_1=100, graph_rps_64=50)  # 100 vs (b) 100, (c) 400; best 50 x 64 = 3200
    assert [t.verdict for t in targets.values()] == ["PASS", "PASS", "PASS"]
    bulk = targets["64 digits, JSON body: >= 50% of the raw model at batch 64"]
    assert bulk.measured == pytest.approx(0.5)
    assert "concurrency 8" in bulk.detail  # the best of the measured concurrencies


def test_targets_fail_below_their_thresholds():
    targets = _targets(graph_rps_1=99, graph_rps_64=49)
    assert [t.verdict for t in targets.values()] == ["FAIL", "FAIL", "FAIL"]
    assert targets["1 digit, concurrency 32: >= 25% of (c)"].measured == pytest.approx(99 / 400)


def test_the_bulk_target_is_judged_per_body_encoding():
    points = [_point("graph", 64, 8, 500), _point("graph", 64, 8, 600, encoding="npy")]  # 3,200 / 3,840 images/s
    targets = {t.name: t for t in evaluate_targets(points, {64: 6400.0})}
    assert targets["64 digits, JSON body: >= 50% of the raw model at batch 64"].measured == pytest.approx(0.5)
    assert targets["64 digits, .npy body: >= 50% of the raw model at batch 64"].measured == pytest.approx(0.6)


def test_targets_without_figures_are_not_applicable():
    targets = evaluate_targets([_point("graph", 1, 1, 100, variant="direct-ingress")], {})
    assert [t.verdict for t in targets] == ["n/a", "n/a", "n/a"]
    assert {t.variant for t in targets} == {"direct-ingress"}
    text = format_targets(targets)
    assert text.splitlines()[0].startswith("n/a   (a) whole graph, direct-ingress, 1 digit, concurrency 32")


def test_each_graph_variant_gets_its_own_targets():
    points = [_point("graph", 1, 32, 10, variant=v) for v in ("default", "haproxy")] + [_point("tutorial", 1, 32, 10)]
    targets = evaluate_targets(points, {})
    assert [t.variant for t in targets] == ["default"] * 3 + ["haproxy"] * 3
    assert targets[0].verdict == "PASS"
    assert "PASS  (a) whole graph, 1 digit, concurrency 32: >= 1.0x (b): 1.00x" in format_targets(targets)


# --- bodies, Serve's entry point, environment -------------------------------------------------------


def test_bodies_cycle_the_real_digits():
    digits = [[[i] * 28] * 28 for i in range(10)]
    body = json.loads(request_body(64, digits))
    assert len(body["image"]) == 64 and body["image"][13] == digits[3]
    assert expected_labels(12, list(range(10))) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_npy_bodies_are_the_same_digits_as_uint8_arrays():
    digits = [[[i] * 28] * 28 for i in range(10)]
    array = np.load(io.BytesIO(request_body(64, digits, "npy")), allow_pickle=False)
    assert array.dtype == np.uint8 and array.shape == (64, 28, 28)
    assert array[13].tolist() == digits[3]
    with pytest.raises(ValueError, match="unknown body encoding"):
        request_body(1, digits, "msgpack")


def test_npy_bodies_only_for_bulk_requests():
    digits = [[[i] * 28] * 28 for i in range(10)]
    bodies = request_bodies([1, 64], ["json", "npy", "grpc"], digits, list(range(10)))
    assert set(bodies) == {(1, "json"), (64, "json"), (64, "npy"), (1, "grpc"), (64, "grpc")}
    body, labels = bodies[(64, "npy")]
    assert labels == expected_labels(64, list(range(10))) and body.startswith(b"\x93NUMPY")


def _group(app_name, port, protocol="HTTP"):
    target = {"ip": "192.0.2.2", "port": port, "instance_id": "", "name": "x"}
    return {"protocol": protocol, "route_prefix": "/", "app_name": app_name, "targets": [target]}


def test_entry_port_prefers_the_app_s_own_targets():
    # direct ingress: the app's group points at the Ingress replica's port
    assert entry_port({"target_groups": [_group("", 8000), _group("mnist", 30001)]}, "mnist") == 30001
    # proxy (or HAProxy): one group for every app, app name empty
    assert entry_port({"target_groups": [_group("", 8000), _group("", 9000, "gRPC")]}, "mnist") == 8000
    assert entry_port({"target_groups": [_group("other", 30002)]}, "mnist") is None
    assert entry_port({"target_groups": [{**_group("mnist", 1), "targets": []}]}, "mnist") is None
    assert entry_port({}, "mnist") is None
    # before the replica's port is allocated, only the proxies are listed
    assert entry_port({"target_groups": [_group("", 8000)]}, "mnist", proxies=False) is None


def test_which_environments_serve_from_the_replica_s_own_port():
    assert expects_direct_ingress(parse_variant("direct-ingress").ray_env())
    assert not expects_direct_ingress(parse_variant("proxy").ray_env())
    # HAProxy on the proxy port, in front of the replica
    assert not expects_direct_ingress(parse_variant("haproxy").ray_env())
    assert not expects_direct_ingress(parse_variant("throughput-optimized").ray_env())
    assert expects_direct_ingress({"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"})
    assert not expects_direct_ingress({"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"})
    assert not expects_direct_ingress({"RAY_SERVE_ENABLE_DIRECT_INGRESS": "true"})  # Serve reads only "1"


def test_bodies_go_to_predict_or_to_the_default_model_s_oip_infer():
    endpoints = Endpoints("http://127.0.0.1:8000")
    assert target_url(endpoints, "json") == target_url(endpoints, "npy") == "http://127.0.0.1:8000/predict"
    assert target_url(endpoints, "oip-json") == target_url(endpoints, "oip-binary")
    assert target_url(endpoints, "oip-json") == f"http://127.0.0.1:8000/v2/models/{DEFAULT_MODEL_ID}/infer"


def test_pythonpath_puts_the_root_first_once():
    assert with_pythonpath(None, "/repo") == "/repo"
    assert with_pythonpath(f"/a{os.pathsep}/repo", "/repo") == f"/repo{os.pathsep}/a"


# --- gRPC ---------------------------------------------------------------------------------------------


def test_grpc_bodies_are_predict_requests_of_the_same_raw_digits():
    from serve_app.proto.mnist_pb2 import PredictRequest

    digits = [[[i] * 28] * 28 for i in range(10)]
    message = PredictRequest.FromString(request_body(64, digits, "grpc"))
    assert message.WhichOneof("pixels") == "raw"
    pixels = np.frombuffer(message.raw, dtype=np.uint8).reshape(64, 28, 28)
    assert pixels[13].tolist() == digits[3]


def test_grpc_points_are_compared_with_the_json_points_of_b_and_c():
    points = [
        _point("graph", 1, 32, 3000, encoding="grpc"),
        _point("tutorial", 1, 32, 1000),
        _point("fastapi", 1, 32, 4000),
    ]
    lines = format_table(points, {}).splitlines()
    assert (
        "| (a) whole graph, gRPC, raw bytes | 1 | 32 | 300 | 300 | 5.0 | 20.0 | 0 | 3.00x | 0.75x | - | - | - |"
        in lines
    )
    targets = {t.name: t for t in evaluate_targets(points, {})}
    assert targets["1 digit, gRPC, raw bytes, concurrency 32: >= 1.0x (b)"].measured == pytest.approx(3.0)
    assert targets["1 digit, gRPC, raw bytes, concurrency 32: >= 25% of (c)"].verdict == "PASS"
    assert targets["1 digit, concurrency 32: >= 1.0x (b)"].verdict == "n/a"  # no JSON point of the graph


def test_the_table_shows_each_load_generator_s_cpu():
    point = _point("graph", 1, 8, 100)
    point = Point("graph", "default", 1, WrkResult(**{**vars(point.result), "client_cores": 0.234}), "json")
    assert format_table([point], {}).splitlines()[2].endswith("| 0.23 |")


def test_grpc_load_summary_counts_transport_failures_apart_from_refusals():
    from bench.grpc_load import summarise

    codes = ["OK"] * 6 + ["UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"]
    figures = summarise([0.001 * (i + 1) for i in range(10)], codes, seconds=2.0, connections=4, cpu_s=0.5)
    # answered calls (refusals included), as wrk counts requests; transport failures apart
    assert figures["requests"] == 8 and figures["errors"] == 2 and figures["non_2xx"] == 2
    assert figures["p50_ms"] == pytest.approx(5.5) and figures["max_ms"] == pytest.approx(10.0)
    assert figures["client_cores"] == pytest.approx(0.25)
    result = WrkResult(**figures)
    point = Point("graph", "default", 1, result, "grpc")
    assert point.ok_per_s == pytest.approx(3.0) and point.errors == 4  # 6 OK in 2 s; 2 refused + 2 failed


def test_grpc_load_summary_of_no_calls_is_zeros():
    from bench.grpc_load import summarise

    figures = summarise([], [], seconds=0.0, connections=1, cpu_s=0.0)
    assert figures["requests"] == 0 and figures["p99_ms"] == 0.0 and figures["client_cores"] == 0.0


def test_grpc_load_says_when_it_cannot_connect():
    import subprocess

    from bench.grpc_load import run_grpc_load
    from serve_app.local.ports import free_port

    with pytest.raises(subprocess.CalledProcessError) as caught:
        run_grpc_load(f"127.0.0.1:{free_port()}", "/mnist_serve.v1.Mnist/Predict", b"", 1, 1.0, timeout_s=1)
    assert "cannot connect to 127.0.0.1:" in caught.value.stderr


def test_oip_points_are_compared_with_kserve_over_the_same_encoding_only():
    points = [
        _point("graph", 1, 32, 3000, encoding="oip-json"),
        _point("kserve", 1, 32, 2000, encoding="oip-json"),
        _point("kserve", 1, 32, 9000, encoding="oip-binary"),
        _point("graph", 64, 32, 100, encoding="oip-binary"),
        _point("kserve", 64, 32, 200, encoding="oip-binary"),
        _point("fastapi", 1, 32, 4000),
    ]
    lines = format_table(points, {}).splitlines()
    # (a) over OIP JSON: 1.5x (d) over OIP JSON; no ratio to (b) or (c), which do not speak it
    assert "| (a) whole graph, OIP, JSON | 1 | 32 | 300 | 300 | 5.0 | 20.0 | 0 | - | - | 1.50x | - | - |" in lines
    targets = {t.name: t for t in evaluate_targets(points, {})}
    assert targets["1 digit, OIP, JSON, concurrency 32: >= 1.0x (d)"].verdict == "PASS"
    binary = targets["64 digits, OIP, binary tensors, concurrency 32: >= 1.0x (d)"]
    assert binary.measured == pytest.approx(0.5) and binary.verdict == "FAIL"


@pytest.mark.parametrize("encoding", ["oip-json", "oip-binary", "oip-grpc"])
def test_oip_bodies_are_requests_the_codec_takes_with_the_true_digits(encoding):
    from serve_app.oip import parse_grpc_request, parse_http_request
    from serve_app.proto import inference_pb2

    images, _ = load_examples()
    body = request_body(3, images.tolist(), encoding)
    if encoding == "oip-grpc":
        parsed = parse_grpc_request(inference_pb2.ModelInferRequest.FromString(body), 256)
    else:
        parsed = parse_http_request(body, request_headers(encoding, body).get(HEADER_LENGTH), 256)
    np.testing.assert_array_equal(parsed.pixels[:, 0], images[:3])
    assert all(output.binary for output in parsed.outputs) == (encoding != "oip-json")
    assert encoding != "oip-binary" or json_part_length(body) == int(request_headers(encoding, body)[HEADER_LENGTH])


def test_oip_answers_are_read_as_json_data_or_raw_bytes():
    import requests

    from serve_app.oip import InferRequest, RequestedOutput, encode_http_response

    for binary in (False, True):
        request = InferRequest(
            None,
            np.zeros((2, 1, 28, 28), np.uint8),
            (RequestedOutput("probabilities", binary), RequestedOutput("label", binary)),
        )
        body, json_length = encode_http_response("mnist-cnn", request, np.eye(10)[[3, 5]], [3, 5])
        response = requests.Response()
        response._content = body
        if json_length is not None:
            response.headers[HEADER_LENGTH] = str(json_length)
        assert oip_answer_labels(response) == [3, 5]


def test_a_json_file_replots_as_the_run_had_it(tmp_path):
    """--json then --replot: the same points and raw figures, and a plot with every server's line."""
    from bench.compare import main, read_figures

    result = WrkResult(
        connections=32,
        requests=400,
        seconds=4.0,
        p50_ms=70.0,
        p90_ms=90.0,
        p99_ms=110.0,
        max_ms=130.0,
        errors=0,
        non_2xx=0,
        client_cores=0.01,
    )
    points = [
        {"server": "graph", "variant": "default", "digits": 1, "encoding": "oip-binary", **result.__dict__},
        {"server": "kserve", "variant": "default", "digits": 1, "encoding": "oip-binary", **result.__dict__},
    ]
    figures = tmp_path / "compare.json"
    figures.write_text(json.dumps({"points": points, "raw_images_per_s": {"1": 3900.0}}))
    read_points, raw = read_figures(figures)
    assert raw == {1: 3900.0}
    assert [(p.server, p.encoding, p.result) for p in read_points] == [
        ("graph", "oip-binary", result),
        ("kserve", "oip-binary", result),
    ]
    plot = tmp_path / "compare.png"
    main(["--replot", str(figures), "--plot", str(plot)])
    assert plot.read_bytes().startswith(b"\x89PNG")
