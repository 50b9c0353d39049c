"""Turn request bodies into validated image batches (pure; no Ray imports).

The input contract, enforced here and documented in the OpenAPI schema:

* ``image`` is a batch of N >= 1 images; each image is 28x28, 1x28x28 or 28x28x1.
* ``pixel_scale`` says how to read the numbers:

  - ``"uint8"``: raw pixels, integers 0-255 (the tutorial's composed app);
  - ``"unit"``: floats in [0, 1], what ``torchvision.transforms.ToTensor`` produces
    (the tutorial's first app posts ``np.random.rand(N, 1, 28, 28)``);
  - ``"auto"`` (default): ``uint8`` when every number is a whole number, ``unit`` as soon
    as one has a fraction. By value, as JSON Schema reads numbers: ``255`` and ``255.0`` are
    the same number. A [0, 1] image of nothing but 0s and 1s therefore needs an explicit
    ``"unit"``.

* Bulk clients may send the batch as a ``.npy`` array instead (``application/x-npy``), with
  the ``pixel_scale`` query parameter (the same rule for ``auto``; any integer or float dtype).
* NaN, infinity, values outside the scale's range, non-numbers, ragged nesting,
  an empty batch are rejected with :class:`~serve_app.errors.InvalidInputError`
  (422); more than ``max_images`` images with
  :class:`~serve_app.errors.PayloadTooLargeError` (413).

The result is always an array of shape (N, 1, 28, 28), dtype uint8 (raw pixels)
or float32 (unit scale), ready for :func:`serve_app.transforms.to_model_input`.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from serve_app.errors import InvalidInputError, MalformedBodyError, PayloadTooLargeError

PixelScale = Literal["auto", "uint8", "unit"]
PIXEL_SCALES: tuple[str, ...] = ("auto", "uint8", "unit")
ACCEPTED_IMAGE_SHAPES = ((28, 28), (1, 28, 28), (28, 28, 1))
ACCEPTED_IMAGE_FORMATS = ("PNG", "JPEG")
#: Uploads larger than this (either side, pixels) are refused before decoding.
MAX_UPLOAD_SIDE = 2048


def parse_json_body(body: bytes) -> Any:
    """Parse a JSON body; NaN and Infinity literals parse (and are rejected later, by name).

    A body nested deeper than Python's recursion limit (about 1,000 levels; an image needs 4) is
    malformed, not a fault of the service.
    """
    if not body.strip():
        raise MalformedBodyError('empty request body; send JSON like {"image": [[[0, ...], ...]]}')
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedBodyError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise MalformedBodyError("malformed JSON: nested too deeply (an image batch needs 4 levels)") from None


def _shape_error(shape: tuple[int, ...]) -> InvalidInputError:
    accepted = ", ".join("x".join(map(str, s)) for s in ACCEPTED_IMAGE_SHAPES)
    per_image = shape[1:] if len(shape) > 1 else ()
    return InvalidInputError(
        f"image batch has shape {list(shape)}; each image must be {accepted} "
        f"(got {'x'.join(map(str, per_image)) or 'a scalar'} per image)"
    )


def _too_many(count: int, max_images: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"batch of {count} images exceeds this service's maximum of {max_images} per request; "
        "split it into smaller requests"
    )


def _one_unbatched_image(images: Sequence[Any]) -> bool:
    """Whether a list looks like one 28x28 image sent without the batch dimension."""
    first = images[0]
    return len(images) == 28 and isinstance(first, Sequence) and len(first) == 28 and not isinstance(first[0], Sequence)


def _as_array(images: Any, max_images: int) -> np.ndarray:
    """Nested lists or an array -> numpy array, refusing ragged or non-numeric input."""
    if isinstance(images, np.ndarray):
        array = images
    else:
        if isinstance(images, (str, bytes, Mapping)) or not isinstance(images, Sequence):
            raise InvalidInputError(f"'image' must be a list of images, got {type(images).__name__}")
        if len(images) > max_images:  # before numpy copies them all
            if _one_unbatched_image(images):
                raise _shape_error((28, 28))
            raise _too_many(len(images), max_images)
        try:
            array = np.asarray(images)
        except ValueError:
            raise InvalidInputError(
                "'image' is ragged: every image must have the same nesting and 28 rows of 28 numbers"
            ) from None
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise InvalidInputError(f"pixels must be numbers; got values of type {array.dtype}")
    return array


def _to_nchw(array: np.ndarray) -> np.ndarray:
    """(N, 28, 28) | (N, 1, 28, 28) | (N, 28, 28, 1) -> (N, 1, 28, 28)."""
    if array.ndim == 3 and array.shape[1:] == (28, 28):
        return array[:, None, :, :]
    if array.ndim == 4 and array.shape[1:] == (1, 28, 28):
        return array
    if array.ndim == 4 and array.shape[1:] == (28, 28, 1):
        return np.moveaxis(array, 3, 1)
    raise _shape_error(array.shape)


def resolve_scale(array: np.ndarray, pixel_scale: PixelScale) -> Literal["uint8", "unit"]:
    """The scale to read ``array`` with: explicit, or inferred from the values (whole numbers: uint8)."""
    if pixel_scale not in PIXEL_SCALES:
        raise InvalidInputError(f"pixel_scale must be one of {list(PIXEL_SCALES)}, got {pixel_scale!r}")
    if pixel_scale != "auto":
        return pixel_scale
    if np.issubdtype(array.dtype, np.integer):
        return "uint8"
    with np.errstate(invalid="ignore"):
        whole = bool(np.all(np.isfinite(array)) and np.array_equal(array, np.floor(array)))
    return "uint8" if whole else "unit"


def _check_range(array: np.ndarray, scale: Literal["uint8", "unit"]) -> np.ndarray:
    """Reject NaN/inf and out-of-range values; return uint8 or float32 pixels."""
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            bad = np.argwhere(~finite)[0]
            raise InvalidInputError(f"image {bad[0]} contains NaN or infinity; pixels must be finite numbers")
    low, high = array.min(), array.max()
    if scale == "uint8":
        if low < 0 or high > 255:
            raise InvalidInputError(
                f"pixel values must lie in [0, 255] for pixel_scale 'uint8'; got min {low}, max {high}"
            )
        if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
            raise InvalidInputError("pixel_scale 'uint8' needs whole numbers 0-255; send 'unit' for floats in [0, 1]")
        return array.astype(np.uint8, copy=False)
    if low < 0 or high > 1:
        raise InvalidInputError(
            f"pixel values must lie in [0, 1] for pixel_scale 'unit'; got min {low}, max {high} "
            "(send whole numbers, or pixel_scale 'uint8', for raw 0-255 pixels)"
        )
    return array.astype(np.float32, copy=False)


def decode_images(images: Any, pixel_scale: PixelScale = "auto", max_images: int = 256) -> np.ndarray:
    """Validate a batch of images; return (N, 1, 28, 28) uint8 or float32 pixels."""
    array = _as_array(images, max_images)
    if array.ndim == 0 or array.shape[0] == 0:
        raise InvalidInputError("'image' is an empty batch; send at least one 28x28 image")
    array = _to_nchw(array)
    if array.shape[0] > max_images:
        raise _too_many(array.shape[0], max_images)
    return _check_range(array, resolve_scale(array, pixel_scale))


def decode_payload(payload: Any, max_images: int) -> np.ndarray:
    """Validate a parsed JSON body (or a handle call's dict) of the form ``{"image": ..., "pixel_scale": ...}``."""
    if not isinstance(payload, Mapping):
        raise InvalidInputError(f"body must be a JSON object with an 'image' field, got {type(payload).__name__}")
    if "image" not in payload:
        raise InvalidInputError("body has no 'image' field; send {\"image\": [<28x28 image>, ...]}")
    unknown = set(payload) - {"image", "pixel_scale"}
    if unknown:
        raise InvalidInputError(f"unknown field(s) {sorted(unknown)}; allowed: 'image', 'pixel_scale'")
    return decode_images(payload["image"], payload.get("pixel_scale", "auto"), max_images)


NPY_MEDIA_TYPE = "application/x-npy"
#: Content types read as JSON (none given, or text: what a bare client sends).
JSON_MEDIA_TYPES = ("application/json", "", "text/plain")


def media_type(content_type: str | None) -> str:
    """The media type of a ``Content-Type`` header, parameters dropped; JSON when there is none."""
    return (content_type if content_type is not None else "application/json").split(";")[0].strip()


#: The longest ``.npy`` header read (numpy's own default bound); an image batch's is under 128 bytes.
MAX_NPY_HEADER_BYTES = 10_000


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` body's header declares, and where its data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fortran_order: bool
    data_offset: int


def read_npy_header(body: bytes) -> NpyHeader:
    """Parse and check a ``numpy.save()`` header without reading (or allocating) the data.

    The header must be a .npy format 1.x-3.x header of a plain numeric array (no object dtype:
    no pickles) and must describe exactly the bytes that follow it.
    """
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise ValueError(f".npy format version {version} is not accepted; numpy.save() writes 1.0")
        shape, fortran_order, dtype = readers[version](stream, max_header_size=MAX_NPY_HEADER_BYTES)
    except (ValueError, EOFError, OSError, SyntaxError) as error:
        raise MalformedBodyError(f"not a .npy array: {error}") from None
    if dtype.hasobject:
        raise MalformedBodyError("not a .npy array of numbers: object arrays (pickles) are never loaded")
    if dtype.kind not in "iuf" or dtype.itemsize > 8:
        raise InvalidInputError(f"a .npy batch must hold integers or floats, not {dtype}")
    header = NpyHeader(tuple(int(n) for n in shape), dtype, bool(fortran_order), stream.tell())
    declared = math.prod(header.shape) * dtype.itemsize
    received = len(body) - header.data_offset
    if declared != received:
        raise MalformedBodyError(
            f"the .npy header declares shape {list(header.shape)} of {dtype} ({declared} bytes of data) "
            f"but {received} bytes follow it"
        )
    return header


def decode_npy_body(body: bytes, pixel_scale: PixelScale = "auto", max_images: int = 256) -> np.ndarray:
    """A ``numpy.save()`` body (no pickles) -> validated (N, 1, 28, 28) pixels, as :func:`decode_images`.

    The header is checked first (:func:`read_npy_header`): a batch of the wrong shape or of too
    many images is refused before its data is touched, and the array is a view of the body.
    """
    if not body:
        raise MalformedBodyError("empty request body; send the bytes numpy.save() writes for the image batch")
    header = read_npy_header(body)
    if len(header.shape) not in (3, 4):
        raise _shape_error(header.shape)
    if header.shape[0] > max_images:
        raise _too_many(header.shape[0], max_images)
    count = math.prod(header.shape)
    array = np.frombuffer(body, dtype=header.dtype, count=count, offset=header.data_offset)
    array = array.reshape(header.shape, order="F" if header.fortran_order else "C")
    return decode_images(array, pixel_scale, max_images)


def decode_image_file(content: bytes, filename: str, invert: bool = False) -> np.ndarray:
    """Decode one PNG or JPEG into (1, 28, 28) uint8, resizing larger digits to 28x28.

    ``invert`` turns black-on-white drawings into MNIST's white-on-black.
    """
    try:
        with Image.open(io.BytesIO(content)) as image:
            if image.format not in ACCEPTED_IMAGE_FORMATS:
                raise InvalidInputError(f"{filename}: {image.format} images are not accepted; send PNG or JPEG")
            if max(image.size) > MAX_UPLOAD_SIDE:
                raise InvalidInputError(
                    f"{filename}: {image.size[0]}x{image.size[1]} px is larger than {MAX_UPLOAD_SIDE} px a side"
                )
            grey = image.convert("L")
            if grey.size != (28, 28):
                grey = grey.resize((28, 28), Image.Resampling.LANCZOS)
            pixels = np.asarray(grey, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InvalidInputError(f"{filename}: not a readable PNG or JPEG image") from None
    if invert:
        pixels = 255 - pixels
    return pixels[None, :, :]


def decode_image_files(files: Sequence[tuple[str, bytes]], max_images: int, invert: bool = False) -> np.ndarray:
    """Decode uploaded files (name, bytes) into a (N, 1, 28, 28) uint8 batch."""
    if not files:
        raise InvalidInputError("no files uploaded; send one or more PNG/JPEG files in the 'files' field")
    if len(files) > max_images:
        raise PayloadTooLargeError(
            f"{len(files)} files exceed this service's maximum of {max_images} images per request"
        )
    return np.stack([decode_image_file(content, name, invert) for name, content in files])
