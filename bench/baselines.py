"""What the two reference servers of ``bench.compare`` share: the model, and one JSON body in, one answer out.

Both references serve the artefact the whole graph serves (``models/mnist-cnn/model.pt``, TorchScript,
loaded by :func:`serve_app.model.load_model`) and take the graph's JSON contract on ``POST /predict``:
``{"image": [...], "pixel_scale": "auto"}`` in, ``{"predicted_label": [...], "probabilities": [...],
"model_id": ...}`` out; (c) also takes the ``.npy`` body of bulk clients (``application/x-npy``),
as the graph does. Validation and normalisation are the project's own
(:func:`serve_app.inputs.decode_payload`, :func:`serve_app.transforms.to_model_input`), so the three
servers differ only in how a request reaches the model:

* ``bench.tutorial_app``  -- (b) one Ray Serve deployment, as the tutorial's section 2 builds it;
* ``bench.fastapi_app``   -- (c) a plain FastAPI app under uvicorn, one worker, no Ray.

Pure PyTorch and ``serve_app``; nothing here imports Ray or a web framework.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from serve_app.config import DEFAULT_MODEL_ID
from serve_app.errors import ServeAppError
from serve_app.inputs import decode_npy_body, decode_payload
from serve_app.model import load_model, model_dir, predict
from serve_app.transforms import to_model_input

#: The artefact all three servers load.
MODEL_PATH = model_dir(DEFAULT_MODEL_ID) / "model.pt"
#: Most images one request may carry: the graph's ``max_batch_images`` default.
MAX_IMAGES = 256


def load_served_model(path: str | None = None) -> torch.nn.Module:
    """The served TorchScript model on the CPU, in eval mode."""
    return load_model(path or MODEL_PATH)


def classify(model: torch.nn.Module, payload: Any, max_images: int = MAX_IMAGES) -> dict[str, Any]:
    """A parsed JSON body -> the graph's answer; :class:`~serve_app.errors.ServeAppError` for a bad body."""
    return classify_pixels(model, decode_payload(payload, max_images))


def classify_npy(model: torch.nn.Module, body: bytes, max_images: int = MAX_IMAGES) -> dict[str, Any]:
    """A ``numpy.save()`` body -> the graph's answer; :class:`~serve_app.errors.ServeAppError` for a bad body."""
    return classify_pixels(model, decode_npy_body(body, max_images=max_images))


def classify_pixels(model: torch.nn.Module, pixels: np.ndarray) -> dict[str, Any]:
    """Validated (N, 1, 28, 28) pixels -> the graph's answer (labels, probabilities, model id)."""
    result = predict(model, to_model_input(pixels))
    return {
        "predicted_label": result.labels.tolist(),
        "probabilities": result.probabilities.tolist(),
        "model_id": DEFAULT_MODEL_ID,
    }


def error_answer(error: ServeAppError) -> tuple[dict[str, object], int]:
    """The graph's error body and status for a client mistake."""
    return error.to_body(), int(error.status)
