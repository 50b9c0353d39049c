"""The Open Inference Protocol codec: requests in (JSON, binary, gRPC), answers out, refusals as 4xx."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from serve_app.oip import (
    HEADER_LENGTH,
    OUTPUTS,
    OipError,
    RequestedOutput,
    encode_grpc_response,
    encode_http_response,
    grpc_model_config,
    grpc_model_metadata,
    model_config,
    model_metadata,
    parse_grpc_request,
    parse_http_request,
    server_metadata,
    split_body,
)
from serve_app.proto import inference_pb2 as pb
from serve_app.schemas import OIP_OUTPUT_NAMES, oip_infer_request_schema

MAX = 4
RNG = np.random.default_rng(0)
FLOATS = RNG.random((2, 1, 28, 28), dtype=np.float32)
RAW = RNG.integers(0, 256, size=(2, 28, 28), dtype=np.uint8)


def request(datatype="FP32", shape=(2, 1, 28, 28), data=None, **extra) -> bytes:
    tensor = {"name": "image", "datatype": datatype, "shape": list(shape)}
    tensor["data"] = (FLOATS if datatype == "FP32" else RAW).ravel().tolist() if data is None else data
    return json.dumps({"inputs": [tensor], **extra}).encode()


def binary_request(array: np.ndarray, datatype: str, outputs=None, parameters=None) -> tuple[bytes, str]:
    raw = array.tobytes()
    header = {
        "inputs": [
            {
                "name": "image",
                "datatype": datatype,
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        ]
    }
    if outputs is not None:
        header["outputs"] = outputs
    if parameters is not None:
        header["parameters"] = parameters
    text = json.dumps(header).encode()
    return text + raw, str(len(text))


def test_a_json_fp32_request_gives_unit_pixels_and_every_output():
    parsed = parse_http_request(request(), None, MAX)
    assert parsed.pixels.dtype == np.float32 and parsed.pixels.shape == (2, 1, 28, 28)
    np.testing.assert_array_equal(parsed.pixels, FLOATS)
    assert parsed.outputs == (RequestedOutput("probabilities", False), RequestedOutput("label", False))


def test_a_json_uint8_request_with_n_28_28_gives_raw_pixels():
    parsed = parse_http_request(request("UINT8", (2, 28, 28), id="r1"), None, MAX)
    assert parsed.pixels.dtype == np.uint8 and parsed.id == "r1"
    np.testing.assert_array_equal(parsed.pixels[:, 0], RAW)


def test_nested_json_data_is_accepted_as_well_as_flat():
    assert parse_http_request(request(data=FLOATS.tolist()), None, MAX).pixels.shape == (2, 1, 28, 28)


@pytest.mark.parametrize(("array", "datatype"), [(FLOATS, "FP32"), (RAW, "UINT8")])
def test_binary_inputs_both_datatypes(array, datatype):
    body, length = binary_request(array, datatype)
    parsed = parse_http_request(body, length, MAX)
    np.testing.assert_array_equal(parsed.pixels.reshape(array.shape), array)


def test_binary_outputs_follow_the_json_in_request_order():
    body, length = binary_request(
        FLOATS, "FP32", outputs=[{"name": "label", "parameters": {"binary_data": True}}, {"name": "probabilities"}]
    )
    parsed = parse_http_request(body, length, MAX)
    probabilities, labels = np.full((2, 10), 0.1), [3, 7]
    answer, header_length = encode_http_response("mnist-cnn", parsed, probabilities, labels)
    header = json.loads(answer[:header_length])
    assert [o["name"] for o in header["outputs"]] == ["label", "probabilities"]
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 16} and "data" not in header["outputs"][0]
    assert header["outputs"][1]["data"] == pytest.approx([0.1] * 20) and header["outputs"][1]["shape"] == [2, 10]
    assert np.frombuffer(answer[header_length:], dtype="<i8").tolist() == labels


def test_binary_data_output_makes_every_output_raw():
    body, length = binary_request(FLOATS, "FP32", parameters={"binary_data_output": True})
    parsed = parse_http_request(body, length, MAX)
    answer, header_length = encode_http_response("m", parsed, np.eye(10)[:2], [0, 1])
    header = json.loads(answer[:header_length])
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [80, 16]
    assert len(answer) == header_length + 96 and header["model_version"] == "1"


def test_a_json_only_answer_has_no_header_length():
    answer, length = encode_http_response("m", parse_http_request(request(id="x"), None, MAX), np.eye(10)[:2], [0, 1])
    assert length is None and json.loads(answer)["id"] == "x"
    assert json.loads(answer)["outputs"][1] == {"name": "label", "datatype": "INT64", "shape": [2], "data": [0, 1]}


BAD_REQUESTS = [
    (request("FP64"), None, 400, "datatype 'FP64' is not accepted"),
    (request(shape=(2, 3, 28, 28)), None, 400, "is not \\[N, 1, 28, 28\\]"),
    (request(shape=(5, 1, 28, 28), data=[0.0] * 5 * 784), None, 413, "maximum of 4"),
    (request(shape=(1, 1, 28, 28)), None, 400, "shape asks for 784 values, data has 1568"),
    (request(data=[1.5] * 1568), None, 400, "\\[0, 1\\]"),
    (request(data=[float("nan")] * 1568), None, 400, "NaN"),
    (request("UINT8", (2, 28, 28), data=[300] * 1568), None, 400, "\\[0, 255\\]"),
    (request("UINT8", (2, 28, 28), data=[0.5] * 1568), None, 400, "whole numbers"),
    (request(outputs=[{"name": "logits"}]), None, 400, "output 'logits' is unknown"),
    (request(outputs=[{"name": "label"}, {"name": "label"}]), None, 400, "twice"),
    (
        request(outputs=[{"name": "label", "parameters": {"classification": 3}}]),
        None,
        400,
        "'classification' is not served",
    ),
    (request(outputs=[{"name": "label", "shape": [2]}]), None, 400, "unknown field.*in output 'label'"),
    (request(parameters={"priority": 1}), None, 400, "request parameter 'priority' is not served.*binary_data_output"),
    (request(parameters={"binary_data_output": "yes"}), None, 400, "binary_data_output must be true or false"),
    (request(parameters=[1]), None, 400, "parameters must be an object"),
    (
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "FP32",
                        "shape": [1, 28, 28],
                        "data": [0.0] * 784,
                        "parameters": {"shared_memory_region": "r"},
                    }
                ]
            }
        ).encode(),
        None,
        400,
        "input 'image' parameter 'shared_memory_region' is not served",
    ),
    (
        json.dumps(
            {
                "inputs": [
                    {"name": "image", "datatype": "FP32", "shape": [1, 28, 28], "data": [0.0] * 784, "layout": "NCHW"}
                ]
            }
        ).encode(),
        None,
        400,
        "unknown field.*'layout'",
    ),
    (request(id=7), None, 400, "id must be a string"),
    (
        json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 28, 28], "data": []}]}).encode(),
        None,
        400,
        "input 'pixels' is unknown",
    ),
    (json.dumps({"inputs": []}).encode(), None, 400, "exactly one tensor"),
    (json.dumps({"inputs": [], "model": 1}).encode(), None, 400, "unknown field"),
    (b"[1, 2]", None, 400, "JSON object"),
    (b"{", None, 400, "malformed JSON"),
    (b"[" * 5000, None, 400, "malformed JSON|nested"),
    (b"", None, 400, "empty request"),
    (request(), "99999", 400, "body has only"),
    (request(), "twelve", 400, "byte count"),
]


@pytest.mark.parametrize(("body", "length", "status", "message"), BAD_REQUESTS, ids=range(len(BAD_REQUESTS)))
def test_bad_requests_are_refused_with_the_protocols_status(body, length, status, message):
    with pytest.raises(OipError, match=message) as refused:
        parse_http_request(body, length, MAX)
    assert refused.value.status == status and refused.value.to_body() == {"error": refused.value.message}


def test_binary_sizes_must_add_up():
    body, length = binary_request(FLOATS, "FP32")
    with pytest.raises(OipError, match="announced, 6262 sent"):
        parse_http_request(body[:-10], length, MAX)
    text = json.loads(body[: int(length)])
    text["inputs"][0]["parameters"]["binary_data_size"] = 12
    header = json.dumps(text).encode()
    with pytest.raises(OipError, match="binary_data_size must be 6272"):
        parse_http_request(header + FLOATS.tobytes(), str(len(header)), MAX)
    raw = request()
    with pytest.raises(OipError, match="no input has binary_data_size"):
        parse_http_request(raw + b"extra", str(len(raw)), MAX)


def test_split_body_without_a_header_is_all_json():
    assert split_body(b"{}", None) == (b"{}", b"")
    assert split_body(b"{}xy", "2") == (b"{}", b"xy")


def grpc_request(
    array: np.ndarray, datatype: str, raw: bool = True, outputs: tuple[str, ...] = ()
) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="mnist-cnn", id="g1")
    tensor = message.inputs.add(name="image", datatype=datatype, shape=list(array.shape))
    if raw:
        message.raw_input_contents.append(array.tobytes())
    elif datatype == "FP32":
        tensor.contents.fp32_contents.extend(array.ravel().tolist())
    else:
        tensor.contents.uint_contents.extend(array.ravel().tolist())
    for name in outputs:
        message.outputs.add(name=name)
    return message


@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize(("array", "datatype"), [(FLOATS, "FP32"), (RAW, "UINT8")])
def test_grpc_requests_raw_or_in_contents(array, datatype, raw):
    parsed = parse_grpc_request(grpc_request(array, datatype, raw), MAX)
    np.testing.assert_array_equal(parsed.pixels.reshape(array.shape), array)
    assert parsed.id == "g1" and all(o.binary for o in parsed.outputs)


def test_grpc_answers_in_raw_output_contents_only():
    parsed = parse_grpc_request(grpc_request(FLOATS, "FP32", outputs=("label",)), MAX)
    response = encode_grpc_response("mnist-cnn", parsed, np.eye(10)[:2], [4, 2])
    assert [o.name for o in response.outputs] == ["label"] and list(response.outputs[0].shape) == [2]
    assert np.frombuffer(response.raw_output_contents[0], dtype="<i8").tolist() == [4, 2]
    assert response.id == "g1" and response.model_version == "1"


def with_parameter(message: pb.ModelInferRequest, name: str) -> pb.ModelInferRequest:
    message.parameters[name].int64_param = 1
    return message


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (grpc_request(FLOATS[:, :, :, :27].copy(), "FP32"), "is not \\[N, 1, 28, 28\\]"),
        (grpc_request(FLOATS, "INT32"), "datatype 'INT32'"),
        (grpc_request(FLOATS, "FP32", outputs=("scores",)), "output 'scores' is unknown"),
        (with_parameter(grpc_request(FLOATS, "FP32"), "priority"), "request parameter 'priority' is not served"),
    ],
)
def test_grpc_bad_requests(message, text):
    with pytest.raises(OipError, match=text) as refused:
        parse_grpc_request(message, MAX)
    assert refused.value.grpc_code.name == "INVALID_ARGUMENT"


def test_short_raw_contents_are_refused():
    message = grpc_request(FLOATS, "FP32")
    message.raw_input_contents[0] = message.raw_input_contents[0][:-4]
    with pytest.raises(OipError, match="raw contents of 6268 bytes"):
        parse_grpc_request(message, MAX)


def test_metadata_config_and_their_grpc_forms_agree():
    assert server_metadata()["extensions"] == ["binary_tensor_data", "model_configuration"]
    metadata = model_metadata("mnist-cnn")
    assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert [o["name"] for o in metadata["outputs"]] == ["probabilities", "label"]
    grpc_metadata = grpc_model_metadata("mnist-cnn")
    assert [list(t.shape) for t in grpc_metadata.outputs] == [[-1, 10], [-1]]
    config = model_config("mnist-cnn", 256)
    assert config["max_batch_size"] == 256 and config["input"][0]["dims"] == [1, 28, 28]
    grpc_config = grpc_model_config("mnist-cnn", 256).config
    assert grpc_config.max_batch_size == 256 and pb.DataType.Name(grpc_config.output[1].data_type) == "TYPE_INT64"


def test_unknown_versions_are_404():
    from serve_app.oip import check_version

    check_version("1")
    check_version(None)
    with pytest.raises(OipError) as refused:
        check_version("2")
    assert refused.value.status == 404 and refused.value.grpc_code.name == "NOT_FOUND"


def test_the_header_name_is_tritons():
    assert HEADER_LENGTH == "Inference-Header-Content-Length"


def test_the_documented_request_schema_agrees_with_the_codec():
    """Requests the codec takes validate against the OpenAPI schema; the schema refuses what it refuses."""
    schema = oip_infer_request_schema(MAX)
    validator = jsonschema.Draft202012Validator(schema)
    accepted = [
        request(),
        request("UINT8", (2, 28, 28), id="r1"),
        request(
            outputs=[{"name": "label", "parameters": {"binary_data": True}}], parameters={"binary_data_output": False}
        ),
    ]
    for body in accepted:
        parse_http_request(body, None, MAX)
        validator.validate(json.loads(body))
    refused = [
        request("FP64"),
        request(shape=(2, 3, 28, 28)),
        request(shape=(5, 1, 28, 28), data=[0.0] * 5 * 784),
        request(parameters={"priority": 1}),
        request(outputs=[{"name": "logits"}]),
        request(outputs=[{"name": "label", "shape": [2]}]),
        request(id=7),
    ]
    for body in refused:
        with pytest.raises(OipError):
            parse_http_request(body, None, MAX)
        assert not validator.is_valid(json.loads(body)), body[:200]
    assert tuple(OUTPUTS) == OIP_OUTPUT_NAMES


def test_a_shape_of_whole_floats_is_a_shape_as_json_schema_reads_it():
    parsed = parse_http_request(request(shape=(2.0, 1, 28, 28)), None, MAX)
    assert parsed.pixels.shape == (2, 1, 28, 28)
    for shape in [(2.5, 1, 28, 28), (True, 1, 28, 28)]:
        with pytest.raises(OipError, match="list of integers"):
            parse_http_request(request(shape=shape), None, MAX)
