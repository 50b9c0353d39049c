import json

import numpy as np
import pytest
from PIL import Image

from serve_app.errors import InvalidInputError, MalformedBodyError, PayloadTooLargeError
from serve_app.inputs import (
    decode_image_file,
    decode_image_files,
    decode_images,
    decode_npy_body,
    decode_payload,
    media_type,
    parse_json_body,
)
from serve_app.training.examples import EXAMPLES_DIR
from tests.support.payloads import image_bytes, npy_bytes


def test_tutorial_float_batch_is_read_as_unit_scale():
    images = np.random.default_rng(0).random((2, 1, 28, 28))
    pixels = decode_payload(json.loads(json.dumps({"image": images.tolist()})), max_images=8)
    assert pixels.shape == (2, 1, 28, 28)
    assert pixels.dtype == np.float32
    np.testing.assert_allclose(pixels, images, rtol=1e-6)


def test_raw_uint8_digits_are_read_as_uint8(example_digits):
    images, _ = example_digits
    pixels = decode_payload(json.loads(json.dumps({"image": images.tolist()})), max_images=16)
    assert pixels.dtype == np.uint8
    assert pixels.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(pixels[:, 0], images)


@pytest.mark.parametrize("shape", [(3, 28, 28), (3, 1, 28, 28), (3, 28, 28, 1)])
def test_accepted_layouts(shape):
    pixels = decode_images(np.zeros(shape, dtype=np.uint8), max_images=8)
    assert pixels.shape == (3, 1, 28, 28)


def test_numpy_arrays_keep_their_dtype_semantics():
    assert decode_images(np.full((1, 28, 28), 200, dtype=np.int64)).dtype == np.uint8
    assert decode_images(np.full((1, 28, 28), 0.5, dtype=np.float64)).dtype == np.float32


def test_explicit_pixel_scale_overrides_inference():
    ones = [[[1] * 28] * 28]
    assert decode_images(ones, "unit").dtype == np.float32
    assert decode_images(ones, "uint8").dtype == np.uint8
    assert decode_images([[[255.0] * 28] * 28], "uint8").dtype == np.uint8


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([[[0] * 28] * 27], "shape \\[1, 27, 28\\]"),
        ([[0] * 28] * 28, "shape \\[28, 28\\]"),  # a single image without the batch dimension
        ([[[[0] * 28] * 28] * 2], "shape \\[1, 2, 28, 28\\]"),
        ([[[0] * 28] * 28, [[0] * 28] * 27], "ragged"),
        ([[["a"] * 28] * 28], "must be numbers"),
        ([[[True] * 28] * 28], "must be numbers"),
        ([[[None] * 28] * 28], "must be numbers"),
        ("not a list", "must be a list of images"),
        ({"a": 1}, "must be a list of images"),
        (7, "must be a list of images"),
        ([], "empty batch"),
        ([[[300] * 28] * 28], "\\[0, 255\\]"),
        ([[[-1] * 28] * 28], "\\[0, 255\\]"),
        ([[[1.5] * 28] * 28], "\\[0, 1\\]"),
        ([[[float("nan")] * 28] * 28], "NaN or infinity"),
        ([[[float("inf")] * 28] * 28], "NaN or infinity"),
    ],
)
def test_bad_images_are_rejected_with_a_message(images, message):
    with pytest.raises(InvalidInputError, match=message):
        decode_images(images, max_images=8)


def test_fractional_values_with_uint8_scale_are_rejected():
    with pytest.raises(InvalidInputError, match="whole numbers"):
        decode_images([[[0.5] * 28] * 28], "uint8")


def test_unknown_pixel_scale_is_rejected():
    with pytest.raises(InvalidInputError, match="pixel_scale must be one of"):
        decode_images([[[0] * 28] * 28], "percent")  # type: ignore[arg-type]


def test_oversized_batch_is_a_413():
    with pytest.raises(PayloadTooLargeError, match="9 images exceeds this service's maximum of 8"):
        decode_images(np.zeros((9, 28, 28), dtype=np.uint8), max_images=8)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "JSON object"),
        ({"images": []}, "no 'image' field"),
        ({"image": [[[0] * 28] * 28], "extra": 1}, "unknown field"),
    ],
)
def test_bad_payloads(payload, message):
    with pytest.raises(InvalidInputError, match=message):
        decode_payload(payload, max_images=8)


@pytest.mark.parametrize("body", [b"", b"   ", b'{"image": [', b"\xff\xfe", b"{'image': 1}"])
def test_malformed_json_is_a_400(body):
    with pytest.raises(MalformedBodyError):
        parse_json_body(body)


def test_nan_literals_parse_and_are_then_rejected_by_name():
    payload = parse_json_body(b'{"image": [' + json.dumps([[0.0] * 28] * 28).replace("0.0", "NaN", 1).encode() + b"]}")
    with pytest.raises(InvalidInputError, match="NaN"):
        decode_payload(payload, max_images=8)


def test_png_and_jpeg_uploads_decode(example_digits):
    images, _ = example_digits
    png = (EXAMPLES_DIR / "digit-3.png").read_bytes()
    np.testing.assert_array_equal(decode_image_file(png, "digit-3.png")[0], images[3])
    jpeg = image_bytes(Image.fromarray(images[3]), "JPEG")
    decoded = decode_image_file(jpeg, "d.jpg")
    assert decoded.shape == (1, 28, 28)
    assert np.abs(decoded[0].astype(int) - images[3]).mean() < 8


def test_large_and_rgb_uploads_are_resized_and_greyed(example_digits):
    images, _ = example_digits
    big = Image.fromarray(images[5]).resize((280, 280), Image.Resampling.NEAREST).convert("RGB")
    decoded = decode_image_file(image_bytes(big, "PNG"), "big.png")
    assert decoded.shape == (1, 28, 28)
    assert np.abs(decoded[0].astype(int) - images[5]).mean() < 10


def test_invert_turns_black_on_white_into_mnist_polarity(example_digits):
    images, _ = example_digits
    drawing = image_bytes(Image.fromarray(255 - images[2]), "PNG")
    np.testing.assert_array_equal(decode_image_file(drawing, "d.png", invert=True)[0], images[2])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is text", "not a readable PNG or JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "not a readable PNG or JPEG"),
        (image_bytes(Image.new("L", (28, 28)), "GIF"), "GIF images are not accepted"),
        (image_bytes(Image.new("L", (3000, 10)), "PNG"), "larger than 2048"),
    ],
)
def test_bad_uploads_are_rejected(content, message):
    with pytest.raises(InvalidInputError, match=message):
        decode_image_file(content, "upload")


def test_upload_batches():
    png = (EXAMPLES_DIR / "digit-0.png").read_bytes()
    assert decode_image_files([("a", png), ("b", png)], max_images=4).shape == (2, 1, 28, 28)
    with pytest.raises(InvalidInputError, match="no files"):
        decode_image_files([], max_images=4)
    with pytest.raises(PayloadTooLargeError):
        decode_image_files([("a", png)] * 5, max_images=4)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "application/json"),
        ("", ""),
        ("application/x-npy", "application/x-npy"),
        ("application/json; charset=utf-8", "application/json"),
        (" text/plain ;q=1", "text/plain"),
    ],
)
def test_media_type_drops_parameters_and_defaults_to_json(header, expected):
    assert media_type(header) == expected


def test_npy_bodies_decode_with_their_dtype_as_the_scale(example_digits):
    images, _ = example_digits
    raw = decode_npy_body(npy_bytes(images), max_images=16)
    assert raw.dtype == np.uint8 and raw.shape == (10, 1, 28, 28)
    unit = decode_npy_body(npy_bytes(images[:, None] / 255.0), max_images=16)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit * 255, raw, atol=1e-3)


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"", MalformedBodyError, "empty request body"),
        (b"not numpy", MalformedBodyError, "not a .npy array"),
        (npy_bytes(np.array([{"a": 1}], dtype=object)), MalformedBodyError, "not a .npy array"),  # pickles refused
        (npy_bytes(np.zeros((3, 27, 28), dtype=np.uint8)), InvalidInputError, "shape"),
        (npy_bytes(np.full((1, 28, 28), np.nan)), InvalidInputError, "NaN"),
        (npy_bytes(np.zeros((300, 28, 28), dtype=np.uint8)), PayloadTooLargeError, "maximum of 256"),
    ],
)
def test_bad_npy_bodies(body, error, message):
    with pytest.raises(error, match=message):
        decode_npy_body(body, max_images=256)
