"""Pixel transforms shared by training and serving (pure; no Ray imports).

One normalisation for everything the model sees, built from torchvision's v2
transforms so that it works on whole batches:

* uint8 pixels 0-255 (raw digits, as the tutorial's composed app receives them)
  are scaled to [0, 1] by ``ToDtype(float32, scale=True)``, exactly what
  ``ToTensor`` does;
* float pixels already in [0, 1] (what ``ToTensor`` produces) pass that step
  unchanged;
* both are then normalised with ``Normalize((0.5,), (0.5,))`` into [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

NORMALIZE_MEAN = (0.5,)
NORMALIZE_STD = (0.5,)


def model_input_transform() -> v2.Compose:
    """The torchvision pipeline that maps a (N, 1, 28, 28) uint8 or [0, 1] float batch to model input."""
    return v2.Compose(
        [
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=NORMALIZE_MEAN, std=NORMALIZE_STD),
        ]
    )


_TRANSFORM = model_input_transform()


def to_model_input(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Apply :func:`model_input_transform` to a (N, 1, 28, 28) uint8 or float array."""
    if isinstance(pixels, np.ndarray):
        # Arrays from the object store or np.frombuffer are read-only; torch needs writable memory.
        pixels = np.require(pixels, requirements="W")
    tensor = torch.as_tensor(pixels)
    if tensor.dtype == torch.float64:
        tensor = tensor.to(torch.float32)
    return _TRANSFORM(tensor)


#: Pixel transforms a model can be trained on (``serve_app.training.train --pixel-transform``).
PIXEL_TRANSFORMS = ("none", "invert")


def apply_pixel_transform(pixels_uint8: np.ndarray, transform: str) -> np.ndarray:
    """Apply a named pixel transform to raw uint8 pixels (any shape), before normalisation.

    * ``"none"``   -- the pixels unchanged (MNIST: white digits on black);
    * ``"invert"`` -- ``255 - pixel`` (black digits on white, e.g. a scanner's output).

    Returns a new array for ``"invert"`` and the input itself for ``"none"``.
    """
    if transform not in PIXEL_TRANSFORMS:
        raise ValueError(f"unknown pixel transform {transform!r}; expected one of {PIXEL_TRANSFORMS}")
    pixels_uint8 = np.asarray(pixels_uint8)
    if pixels_uint8.dtype != np.uint8:
        raise TypeError(f"pixel transforms apply to uint8 pixels 0-255, got {pixels_uint8.dtype}")
    if transform == "invert":
        return np.subtract(np.uint8(255), pixels_uint8, dtype=np.uint8)
    return pixels_uint8
