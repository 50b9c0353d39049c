"""Preprocessor deployment: validated pixels -> normalised model input (CPU).

A thin Serve wrapper around :func:`serve_app.transforms.to_model_input`, so
CPU preprocessing scales independently of GPU inference.
"""

from __future__ import annotations

import numpy as np
from ray import serve

from serve_app.transforms import to_model_input


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class Preprocessor:
    """Applies the torchvision transforms of :mod:`serve_app.transforms` to whole batches."""

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 1, 28, 28) uint8 0-255 or float [0, 1] -> float32 (N, 1, 28, 28) in [-1, 1]."""
        return to_model_input(pixels).numpy()
