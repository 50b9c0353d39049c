"""Classifier deployment: loads the model once and classifies normalised batches.

Runs on CUDA when the replica was given a GPU share (``num_gpus`` > 0, also a
fraction), on the CPU otherwise. Concurrent requests are merged into one model
call by ``@serve.batch``; its size and wait come from ``user_config`` and change
live through ``reconfigure()`` (no replica restart).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import serve

from serve_app.config import MODELS_DIR, BatchingConfig
from serve_app.model import load_model, model_dir, predict, select_device

logger = logging.getLogger("ray.serve")

_DEFAULT_BATCHING = BatchingConfig()


def split_rows(values: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Split the rows of a merged batch back into per-request pieces of ``sizes`` rows."""
    return np.split(values, np.cumsum(sizes)[:-1])


# Invariant: max_ongoing_requests >= max_batch_size, or a batch can never fill; 2x lets the
# next batch gather while one runs. The Serve config keeps 32 for a batch size of 16.
@serve.deployment(
    ray_actor_options={"num_cpus": 1, "num_gpus": 0},
    max_ongoing_requests=2 * _DEFAULT_BATCHING.max_batch_size,
    user_config=_DEFAULT_BATCHING.model_dump(),
)
class Classifier:
    """Holds one TorchScript model in memory."""

    def __init__(self, model_id: str, models_dir: str | None = None) -> None:
        self.model_id = model_id
        self.device = select_device(ray.get_gpu_ids(), torch.cuda.is_available())
        path = model_dir(model_id, Path(models_dir) if models_dir else MODELS_DIR) / "model.pt"
        self.model = load_model(path, self.device)
        self.batching = _DEFAULT_BATCHING
        logger.info("Classifier loaded %s from %s on %s", model_id, path, self.device)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply a new ``user_config`` (batch size and wait) without restarting the replica."""
        self.batching = BatchingConfig.model_validate(user_config)
        self._predict_batch.set_max_batch_size(self.batching.max_batch_size)
        self._predict_batch.set_batch_wait_timeout_s(self.batching.batch_wait_timeout_s)
        logger.info("Classifier batching: %s", self.batching)

    async def predict(self, images: np.ndarray) -> dict[str, Any]:
        """Normalised float32 (N, 1, 28, 28) -> labels, probabilities and the model id."""
        return await self._predict_batch(images)

    @serve.batch(
        max_batch_size=_DEFAULT_BATCHING.max_batch_size, batch_wait_timeout_s=_DEFAULT_BATCHING.batch_wait_timeout_s
    )
    async def _predict_batch(self, requests: list[np.ndarray]) -> list[dict[str, Any]]:
        """One model call for several requests' images; answers in request order."""
        sizes = [len(images) for images in requests]
        result = predict(self.model, torch.from_numpy(np.concatenate(requests)))
        labels = split_rows(result.labels, sizes)
        probabilities = split_rows(result.probabilities, sizes)
        return [
            {"predicted_label": label.tolist(), "probabilities": prob.tolist(), "model_id": self.model_id}
            for label, prob in zip(labels, probabilities, strict=True)
        ]

    def batching_config(self) -> dict[str, Any]:
        """The batching settings in force on this replica."""
        return self.batching.model_dump()

    def device_name(self) -> str:
        """``cpu`` or ``cuda``: where this replica runs the model."""
        return self.device.type
