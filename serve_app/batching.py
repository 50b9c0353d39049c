"""Pure helpers of the Classifier's dynamic batching (no Ray imports).

``@serve.batch`` hands the Ingress (and the Classifier) a list of requests; each may carry
several images and name its own model. The batch is cut per model (a model never sees
another model's images), each model's images are concatenated into one call, and the
answers are split back per request.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ModelRequest:
    """One caller's images (N, 1, 28, 28) for one model, and the caller's context.

    ``context`` is the caller's ``contextvars.Context`` (Serve's request context, the trace):
    a merged call runs in its own task, so it runs in the context of its batch's first request.
    """

    model_id: str
    images: np.ndarray
    context: Any = None


def group_by_model(requests: list[ModelRequest]) -> dict[tuple[str, str], list[int]]:
    """(model id, pixel dtype) -> indices of the requests in that group, in arrival order.

    The dtype is part of the key because uint8 pixels (0-255) and float pixels ([0, 1]) are
    scaled differently and must not be concatenated into one array.
    """
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, request in enumerate(requests):
        groups[(request.model_id, request.images.dtype.str)].append(index)
    return dict(groups)


def merge(requests: list[ModelRequest], indices: list[int]) -> tuple[np.ndarray, list[int]]:
    """The images of the chosen requests in one array, and each request's number of rows."""
    sizes = [len(requests[i].images) for i in indices]
    return np.concatenate([requests[i].images for i in indices]), sizes


def split_answer(answer: dict, sizes: list[int]) -> list[dict]:
    """Split a merged answer (``predicted_label``/``probabilities`` lists) back per request."""
    bounds = np.cumsum([0, *sizes])
    return [
        {
            "predicted_label": answer["predicted_label"][start:end],
            "probabilities": answer["probabilities"][start:end],
            "model_id": answer["model_id"],
        }
        for start, end in itertools.pairwise(bounds)
    ]
