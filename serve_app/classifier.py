"""Classifier deployment: loads the model once and classifies normalised batches.

Runs on CUDA when the replica was given a GPU share (``num_gpus`` > 0, also a
fraction), on the CPU otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import ray
import torch
from ray import serve

from serve_app.model import MODELS_DIR, load_model, model_dir, predict, select_device

logger = logging.getLogger("ray.serve")


@serve.deployment(ray_actor_options={"num_cpus": 1, "num_gpus": 0})
class Classifier:
    """Holds one TorchScript model in memory."""

    def __init__(self, model_id: str, models_dir: str | None = None) -> None:
        self.model_id = model_id
        self.device = select_device(ray.get_gpu_ids(), torch.cuda.is_available())
        path = model_dir(model_id, Path(models_dir) if models_dir else MODELS_DIR) / "model.pt"
        self.model = load_model(path, self.device)
        logger.info("Classifier loaded %s from %s on %s", model_id, path, self.device)

    def predict(self, images: np.ndarray) -> dict:
        """Normalised float32 (N, 1, 28, 28) -> labels, probabilities and the model id."""
        result = predict(self.model, torch.from_numpy(images))
        return {
            "predicted_label": result.labels.tolist(),
            "probabilities": result.probabilities.tolist(),
            "model_id": self.model_id,
        }

    def device_name(self) -> str:
        """``cpu`` or ``cuda``: where this replica runs the model."""
        return self.device.type
