"""Hostile bodies get a clear 4xx before anything large is allocated; the schema says what is accepted."""

from __future__ import annotations

import json
import struct
import time
import tracemalloc

import jsonschema
import numpy as np
import pytest

from serve_app.errors import InvalidInputError, MalformedBodyError, PayloadTooLargeError, ServeAppError
from serve_app.inputs import decode_npy_body, decode_payload, parse_json_body, read_npy_header
from serve_app.schemas import predict_request_schema
from tests.support.payloads import npy_bytes

MAX_IMAGES = 4


def npy_with_header(header: str, data: bytes = b"") -> bytes:
    text = header + " " * (117 - len(header)) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode() + data


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_deeply_nested_json_is_a_malformed_body_not_a_crash(depth):
    body = b'{"image": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(MalformedBodyError, match="nested too deeply"):
        parse_json_body(body)


def test_a_header_claiming_a_trillion_elements_is_refused_without_allocating():
    body = npy_with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (1000000, 1000, 1000), }", b"\0" * 100)
    assert len(body) == 228
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(MalformedBodyError, match=r"declares shape \[1000000, 1000, 1000\].*but 100 bytes follow"):
        decode_npy_body(body, max_images=256)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.perf_counter() - started < 1 and peak < 1_000_000


def test_a_body_shorter_or_longer_than_its_header_is_malformed():
    body = npy_bytes(np.zeros((2, 28, 28), dtype=np.uint8))
    with pytest.raises(MalformedBodyError, match="1568 bytes of data"):
        decode_npy_body(body[:-10])
    with pytest.raises(MalformedBodyError, match="but 1578 bytes follow"):
        decode_npy_body(body + b"\0" * 10)


def test_too_many_images_in_a_npy_body_is_413_from_the_header():
    with pytest.raises(PayloadTooLargeError, match="batch of 5 images"):
        decode_npy_body(npy_bytes(np.zeros((5, 28, 28), dtype=np.uint8)), max_images=MAX_IMAGES)


@pytest.mark.parametrize(
    ("array", "error", "message"),
    [
        (np.array([{"a": 1}], dtype=object), MalformedBodyError, "not a .npy array"),  # pickles are never loaded
        (np.zeros((2, 28, 28), dtype=np.complex64), InvalidInputError, "integers or floats"),
        (np.zeros((2, 28, 28), dtype=np.bool_), InvalidInputError, "integers or floats"),
        (np.zeros((28, 28), dtype=np.uint8), InvalidInputError, "shape"),
        (np.zeros((2, 3, 28, 28), dtype=np.uint8), InvalidInputError, "shape"),
    ],
)
def test_npy_bodies_of_the_wrong_kind_are_refused(array, error, message):
    with pytest.raises(error, match=message):
        decode_npy_body(npy_bytes(array), max_images=MAX_IMAGES)


def test_a_valid_npy_is_read_as_a_view_in_any_order_and_byte_order():
    pixels = np.arange(2 * 28 * 28, dtype=np.uint16).reshape(2, 28, 28) % 256
    decoded = decode_npy_body(npy_bytes(np.asfortranarray(pixels)), max_images=MAX_IMAGES)
    assert decoded.shape == (2, 1, 28, 28) and np.array_equal(decoded[:, 0], pixels)
    big_endian = (pixels / 255).astype(">f4")
    assert np.allclose(decode_npy_body(npy_bytes(big_endian), max_images=MAX_IMAGES)[:, 0], pixels / 255)
    header = read_npy_header(npy_bytes(pixels.astype(np.uint8)))
    assert header.shape == (2, 28, 28) and header.data_offset == 128


def test_a_list_of_too_many_images_is_413_before_numpy_copies_it():
    images = [[[0] * 28] * 28] * 10_000
    with pytest.raises(PayloadTooLargeError, match="batch of 10000 images"):
        decode_payload({"image": images}, max_images=MAX_IMAGES)


# --- the schema agrees with the validation ---------------------------------------------------------

SCHEMA = predict_request_schema(MAX_IMAGES)


def image(value: float, layout: str = "28x28") -> list:
    plane = [[value] * 28 for _ in range(28)]
    return {"28x28": plane, "1x28x28": [plane], "28x28x1": [[[v] for v in row] for row in plane]}[layout]


BODIES = [
    {"image": [image(0)]},
    {"image": [image(255)], "pixel_scale": "uint8"},
    {"image": [image(0.5)]},
    {"image": [image(0.5, "1x28x28"), image(1.0, "1x28x28")], "pixel_scale": "unit"},
    {"image": [image(7, "28x28x1")]},
    {"image": [image(1)], "pixel_scale": "unit"},
    {"image": [image(63.0)]},  # whole numbers written as floats are raw pixels, as JSON Schema reads them
    {"image": [image(0.5), image(200)]},  # a fraction makes the batch [0, 1]: 200 is out of range
    {"image": [image(0), image(0, "1x28x28")]},  # a ragged mix of layouts
    {"image": [image(1.5)]},  # out of [0, 1]
    {"image": [image(256)]},
    {"image": [image(-1)]},
    {"image": [image(0.5)], "pixel_scale": "uint8"},
    {"image": [image(200)], "pixel_scale": "unit"},
    {"image": []},
    {"image": [image(0)] * (MAX_IMAGES + 1)},
    {"image": [image(0)], "pixel_scale": "raw"},
    {"image": [image(0)], "extra": 1},
    {"image": "pixels"},
    {"image": [[[0] * 27] * 28]},
    {"pixel_scale": "auto"},
]


def accepted(body: dict) -> bool:
    try:
        decode_payload(json.loads(json.dumps(body)), MAX_IMAGES)
    except ServeAppError:
        return False
    return True


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_the_schema_accepts_exactly_what_the_validation_accepts(body):
    valid = jsonschema.Draft202012Validator(SCHEMA).is_valid(body)
    assert valid == accepted(body), body.get("pixel_scale")


def test_the_schema_is_valid_json_schema_with_the_batch_limit():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    batches = [b for variant in SCHEMA["anyOf"] for b in variant["properties"]["image"]["anyOf"]]
    assert {b["maxItems"] for b in batches} == {MAX_IMAGES} and len(batches) == 6 + 3 + 3


@pytest.mark.parametrize(
    ("values", "scale"),
    [([0, 255], "uint8"), ([0.0, 255.0], "uint8"), ([0.0, 1.0], "uint8"), ([0.0, 0.5], "unit"), ([1, 0.25], "unit")],
)
def test_auto_reads_whole_numbers_as_raw_pixels_whatever_their_notation(values, scale):
    from serve_app.inputs import resolve_scale

    assert resolve_scale(np.asarray(json.loads(json.dumps(values))), "auto") == scale
