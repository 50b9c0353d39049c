"""Pure helpers of the Classifier's dynamic batching (no Ray imports).

``@serve.batch`` hands the Classifier a list of requests; each may carry several images
and name its own model. The batch is cut per model (a model never sees another model's
images), each model's images are concatenated into one call, and the answers are split
back per request.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np


@dataclass
class ModelRequest:
    """One caller's normalised images (N, 1, 28, 28) for one model."""

    model_id: str
    images: np.ndarray


def group_by_model(requests: list[ModelRequest]) -> dict[str, list[int]]:
    """Model id -> indices of the requests that want it, in arrival order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, request in enumerate(requests):
        groups[request.model_id].append(index)
    return dict(groups)


def split_rows(values: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Split the rows of a merged batch back into per-request pieces of ``sizes`` rows."""
    return np.split(values, np.cumsum(sizes)[:-1])
