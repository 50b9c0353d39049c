"""The MNIST classifier: architecture, artefact loading and batch inference.

Pure PyTorch; nothing here imports Ray. The served artefact is TorchScript
(``model.pt``, the format the Ray Serve tutorial loads with ``torch.jit.load``);
the training command also writes a ``torch.export`` program (``model.pt2``), the
format PyTorch recommends now that TorchScript is deprecated. :func:`load_model`
loads either, chosen by the file suffix.

Model input contract: float32 tensors of shape (N, 1, 28, 28), normalised as
``(pixel / 255 - 0.5) / 0.5`` (values in [-1, 1]); output: logits (N, 10).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from serve_app.config import MODELS_DIR

NUM_CLASSES = 10


class MnistCNN(nn.Module):
    """Two conv blocks and a small head: about 0.42 M parameters, 4.2 M MACs per image."""

    def __init__(self, width: int = 32, hidden: int = 128, dropout: float = 0.25) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 28x28 -> 14x14
            nn.Conv2d(width, 2 * width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 14x14 -> 7x7
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 1, 28, 28) -> logits (N, 10)."""
        return self.head(self.features(x))


ARCHITECTURES: dict[str, type[nn.Module]] = {"cnn": MnistCNN}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_model(path: Path | str, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Load a TorchScript (``.pt``) or ``torch.export`` (``.pt2``) artefact, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model artefact not found: {path}")
    if path.suffix == ".pt2":
        module = torch.export.load(str(path)).module()
        return module.to(device)
    with warnings.catch_warnings():
        # TorchScript is deprecated in torch 2.14 but remains the tutorial's format.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location=device)
    module.eval()
    return module


@dataclass(frozen=True)
class Prediction:
    """Labels (N,) int64 and class probabilities (N, 10) float32."""

    labels: np.ndarray
    probabilities: np.ndarray


def predict(model: torch.nn.Module, images: torch.Tensor, max_images_per_call: int | None = None) -> Prediction:
    """Run a normalised (N, 1, 28, 28) batch through ``model`` and return labels and softmax.

    ``max_images_per_call`` splits a large batch into model calls of at most that many images
    (None: one call). On a CPU a call's activations outgrow the caches past a few hundred
    images and each image gets slower (``python -m bench.model_batch`` measures it); the
    answer is the same either way.
    """
    if max_images_per_call is not None and max_images_per_call < 1:
        raise ValueError(f"max_images_per_call must be >= 1 or None, got {max_images_per_call}")
    device = next(iter(model.parameters()), torch.empty(0)).device
    chunks = (images,) if max_images_per_call is None else images.split(max_images_per_call)
    with torch.inference_mode():
        logits = torch.cat([model(chunk.to(device, non_blocking=True)) for chunk in chunks])
        probabilities = torch.softmax(logits.float(), dim=1).cpu().numpy()
    return Prediction(labels=probabilities.argmax(axis=1), probabilities=probabilities)


#: Set to ``1`` where Ray advertises GPUs that the pod does not have (the chart's
#: ``workerGroups.gpu.simulateGpus``, the local test clusters): a GPU share then runs on the CPU.
SIMULATED_GPUS_ENV = "MNIST_SERVE_SIMULATED_GPUS"


class CudaUnavailableError(RuntimeError):
    """A replica was given a GPU share, but CUDA does not work in its process."""


def select_device(gpu_ids: list[Any], cuda_available: bool, gpus_simulated: bool = False) -> torch.device:
    """CUDA when this process was given a GPU share, the CPU when it was given none.

    ``gpu_ids`` is what ``ray.get_gpu_ids()`` returns inside a replica: empty when the
    replica's ``num_gpus`` is 0, non-empty for any positive (also fractional) share. A share
    without working CUDA is refused (:class:`CudaUnavailableError`), so a GPU pod whose driver or
    runtime is missing fails its replicas loudly instead of serving on the CPU unnoticed, unless
    the GPUs are declared simulated (``gpus_simulated``, from :data:`SIMULATED_GPUS_ENV`).
    """
    if not gpu_ids:
        return torch.device("cpu")
    if cuda_available:
        return torch.device("cuda")
    if gpus_simulated:
        return torch.device("cpu")
    raise CudaUnavailableError(
        f"this replica was given GPU {list(gpu_ids)} but CUDA is unavailable "
        f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}): the pod has no usable NVIDIA "
        "driver. Check that the node's driver supports this CUDA version (nvidia-smi), and that the pod "
        "runs with the NVIDIA container runtime (workerGroups.gpu.runtimeClassName, e.g. nvidia). On a "
        f"cluster without GPUs use workerGroups.gpu.simulateGpus=true (sets {SIMULATED_GPUS_ENV}=1)."
    )


def gpus_simulated(environ: Mapping[str, str]) -> bool:
    """Whether :data:`SIMULATED_GPUS_ENV` declares this process's GPUs simulated."""
    return environ.get(SIMULATED_GPUS_ENV, "").strip().lower() in ("1", "true", "yes")


def model_dir(model_id: str, models_dir: Path = MODELS_DIR) -> Path:
    """Directory of one model in the store."""
    return models_dir / model_id
