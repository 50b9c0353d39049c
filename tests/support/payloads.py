"""Request bodies the tests build: ``.npy`` bodies (``application/x-npy``) and encoded images."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as ``numpy.save()`` writes it: an ``application/x-npy`` body.

    An object array is pickled, as a hostile client would send it (the service refuses pickles).
    """
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def image_bytes(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """``image`` encoded as ``fmt`` (``"PNG"``, ``"JPEG"``, ...; ``options`` go to ``Image.save``)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()
