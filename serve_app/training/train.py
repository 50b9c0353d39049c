"""Train the MNIST classifier on the 60,000 real training images and export it.

Writes, into ``--out`` (default ``models/mnist-cnn``):

* ``model.pt``   -- TorchScript, the artefact the Classifier serves (the tutorial's format);
* ``model.pt2``  -- the same weights as a ``torch.export`` program (dynamic batch size);
* ``card.json``  -- the machine-readable model card;
* ``MODEL_CARD.md`` -- the same card for people.

Deterministic for a given ``--seed`` on a given machine and thread count: every
random draw comes from seeded generators and ``torch.use_deterministic_algorithms``
is on. (Float summation order inside oneDNN kernels can differ between CPU
generations, so bit-identical weights are promised per machine, not across them.)

    python -m serve_app.training.train                 # the shipped model, ~3 min on 2 cores
    python -m serve_app.training.train --epochs 1 --out /tmp/quick
    python -m serve_app.training.train --model-id mnist-cnn-small --width 16 --hidden 64
    python -m serve_app.training.train --model-id mnist-cnn-inverted --pixel-transform invert

``--width``/``--hidden`` size the network (see :class:`serve_app.model.MnistCNN`);
``--pixel-transform invert`` trains and evaluates on inverted digits (``255 - pixel``,
applied to the uint8 images before normalisation): a model for black-on-white inputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from serve_app.config import DEFAULT_MODEL_ID, MODELS_DIR
from serve_app.model import ARCHITECTURES, count_parameters, predict
from serve_app.training import data
from serve_app.transforms import PIXEL_TRANSFORMS, apply_pixel_transform, to_model_input

#: Largest random translation (pixels) applied to training digits.
MAX_SHIFT = 2


#: The card's ``input`` field per pixel transform: what the model expects to be fed.
INPUT_BY_TRANSFORM = {
    "none": "float32 (N, 1, 28, 28), (pixel/255 - 0.5) / 0.5",
    "invert": (
        "float32 (N, 1, 28, 28), (pixel/255 - 0.5) / 0.5 of black-on-white digits "
        "(MNIST inverted: pixel = 255 - mnist_pixel)"
    ),
}

#: The MODEL_CARD.md "expected inputs" row per pixel transform.
EXPECTED_DIGITS = {
    "none": "white digits on a black background, as in MNIST (raw pixels, not inverted)",
    "invert": (
        "**black digits on a white background** (MNIST inverted, 255 - pixel); plain MNIST-style "
        "white-on-black digits are classified poorly"
    ),
}


#: MODEL_CARD.md: a sentence on the data after the pixel transform (appended to the intro).
DATA_NOTE = {
    "none": "",
    "invert": (
        "\nBoth splits are **inverted** (`255 - pixel` on the uint8 images, before\n"
        "normalisation): black digits on white, standing in for a per-customer fine-tune."
    ),
}

#: MODEL_CARD.md: what to feed the model (closing paragraph).
USAGE_NOTE = {
    "none": (
        "MNIST digits are\ncentred, white on black; other inputs (photos, black-on-white drawings) need the\n"
        "same preparation before they are classified well."
    ),
    "invert": (
        "Feed it centred\nblack-on-white digits (raw pixels, dark ink = low values); white-on-black MNIST-style\n"
        "digits must be inverted (`255 - pixel`) first, or most are misclassified."
    ),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights."""

    model_id: str = DEFAULT_MODEL_ID
    arch: str = "cnn"
    epochs: int = 4
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    augment: bool = True
    train_limit: int | None = None
    width: int = 32
    hidden: int = 128
    pixel_transform: str = "none"


def seed_everything(seed: int, threads: int) -> torch.Generator:
    """Seed torch, enable deterministic kernels, fix the thread count; return a generator."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def random_shift(
    batch: torch.Tensor, generator: torch.Generator, max_shift: int = MAX_SHIFT, fill: float | None = None
) -> torch.Tensor:
    """Translate each (1, 28, 28) image by its own random offset in [-max_shift, max_shift].

    Pixels shifted in are ``fill`` (the background value; default: the batch minimum).
    """
    n, _, height, width = batch.shape
    padded = F.pad(batch, (max_shift,) * 4, value=float(batch.min()) if fill is None else fill)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    rows = (offsets[:, 0, None] + torch.arange(height)).view(n, height, 1)
    cols = (offsets[:, 1, None] + torch.arange(width)).view(n, 1, width)
    index = torch.arange(n).view(n, 1, 1)
    return padded[:, 0][index, rows, cols].unsqueeze(1)


def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Accuracy of ``model`` on normalised ``images``."""
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        result = predict(model, images[start : start + batch_size])
        correct += int((torch.from_numpy(result.labels) == labels[start : start + batch_size]).sum())
    return correct / len(images)


def background_value(pixel_transform: str) -> float:
    """Normalised model-input value of a background pixel (raw 0) after ``pixel_transform``."""
    background = apply_pixel_transform(np.zeros((1, 1, 1, 1), dtype=np.uint8), pixel_transform)
    return float(to_model_input(background).flatten()[0])


def train(config: TrainConfig) -> tuple[torch.nn.Module, dict]:
    """Train per ``config``; return the model (eval mode) and metrics.

    Both splits go through ``config.pixel_transform`` (on the uint8 pixels, before
    normalisation), so the reported accuracy is on transformed test images.
    """
    generator = seed_everything(config.seed, config.threads)
    train_split = data.load_split("train")
    test_split = data.load_split("test")
    train_x = to_model_input(apply_pixel_transform(train_split.images, config.pixel_transform)[:, None])
    train_y = torch.from_numpy(train_split.labels.astype(np.int64))
    if config.train_limit:
        train_x, train_y = train_x[: config.train_limit], train_y[: config.train_limit]
    test_x = to_model_input(apply_pixel_transform(test_split.images, config.pixel_transform)[:, None])
    test_y = torch.from_numpy(test_split.labels.astype(np.int64))
    # Shifted-in border pixels are background: black (-1) for plain digits, white (+1) inverted.
    fill = background_value(config.pixel_transform)

    model = ARCHITECTURES[config.arch](width=config.width, hidden=config.hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = (len(train_x) + config.batch_size - 1) // config.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch
    )
    started = time.perf_counter()
    history = []
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        running_loss = 0.0
        for step in range(steps_per_epoch):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = train_x[index]
            if config.augment:
                batch = random_shift(batch, generator, fill=fill)
            loss = F.cross_entropy(model(batch), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running_loss += float(loss.detach())
        accuracy = evaluate(model, test_x, test_y)
        history.append({"epoch": epoch + 1, "loss": running_loss / steps_per_epoch, "test_accuracy": accuracy})
        print(
            f"epoch {epoch + 1}/{config.epochs} loss {running_loss / steps_per_epoch:.4f} test accuracy {accuracy:.4%}"
        )
    model.eval()
    metrics = {
        "test_accuracy": evaluate(model, test_x, test_y),
        "test_images": len(test_x),
        "train_images": len(train_x),
        "train_seconds": round(time.perf_counter() - started, 1),
        "history": history,
    }
    return model, metrics


def export(model: torch.nn.Module, out: Path) -> dict[str, str]:
    """Write TorchScript (``model.pt``) and torch.export (``model.pt2``); return their sha256."""
    out.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 1, 28, 28)
    scripted = torch.jit.trace(model, example)
    torch.jit.save(scripted, str(out / "model.pt"))
    batch = torch.export.Dim("batch", min=1, max=4096)
    exported = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(exported, str(out / "model.pt2"))
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in ("model.pt", "model.pt2")}


def write_card(
    out: Path, config: TrainConfig, model: torch.nn.Module, metrics: dict, digests: dict, command: str
) -> dict:
    """Write ``card.json`` and ``MODEL_CARD.md``; return the card."""
    card = {
        "model_id": config.model_id,
        "architecture": str(model),
        "parameters": count_parameters(model),
        "input": INPUT_BY_TRANSFORM[config.pixel_transform],
        "pixel_transform": config.pixel_transform,
        "output": "logits (N, 10)",
        "test_accuracy": metrics["test_accuracy"],
        "test_images": metrics["test_images"],
        "train_images": metrics["train_images"],
        "train_seconds": metrics["train_seconds"],
        "history": metrics["history"],
        "sha256": digests,
        "train_config": asdict(config),
        "command": command,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {config.threads} threads",
    }
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    history = "\n".join(f"| {h['epoch']} | {h['loss']:.4f} | {h['test_accuracy']:.2%} |" for h in metrics["history"])
    training = (
        f"{config.epochs} epochs, AdamW + one-cycle LR {config.learning_rate}, batch {config.batch_size}, "
        f"random shifts of up to {MAX_SHIFT} px: {'on' if config.augment else 'off'}, seed {config.seed}"
    )
    width, hidden = config.width, config.hidden
    architecture = (
        f"`{config.arch}` (width {width}, hidden {hidden}): conv3x3 1->{width}, BatchNorm, ReLU, maxpool -> "
        f"conv3x3 {width}->{2 * width}, BatchNorm, ReLU, maxpool -> linear {2 * width * 7 * 7}->{hidden} -> "
        f"dropout -> linear {hidden}->10"
    )
    train_images, test_images = metrics["train_images"], metrics["test_images"]
    data_note = DATA_NOTE[config.pixel_transform]
    role = "the reference model" if config.model_id == DEFAULT_MODEL_ID else "a variant in the model store"
    (out / "MODEL_CARD.md").write_text(
        f"""# Model card: `{config.model_id}`

A small convolutional network that classifies 28x28 greyscale handwritten digits
(MNIST) into the ten classes 0-9. Trained by this repository's own command on the
{train_images:,} real MNIST training images; evaluated on the {test_images:,} real test images.{data_note}

| | |
|---|---|
| architecture | {architecture} |
| parameters | {card["parameters"]:,} |
| test accuracy | **{metrics["test_accuracy"]:.2%}** on {metrics["test_images"]:,} images |
| training | {training} |
| training time | {metrics["train_seconds"]} s on {card["machine"]} |
| pixel transform | `{config.pixel_transform}`: trained and evaluated on {EXPECTED_DIGITS[config.pixel_transform]} |
| input | {card["input"]} |
| output | {card["output"]} |
| `model.pt` (TorchScript, served) | sha256 `{digests["model.pt"]}` |
| `model.pt2` (torch.export) | sha256 `{digests["model.pt2"]}` |
| torch | {torch.__version__} |

## Per-epoch history

| epoch | train loss | test accuracy |
|---|---|---|
{history}

## Reproduce

```
{command}
```

Deterministic for a given seed on the same machine and thread count (see
`serve_app/training/train.py`). Intended use: {role} of mnist-serve, a
demonstration of serving; not for any decision that matters. {USAGE_NOTE[config.pixel_transform]}
"""
    )
    return card


def parse_args(argv: list[str] | None) -> tuple[TrainConfig, Path]:
    """Command-line flags -> (config, output dir)."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description="Train and export the MNIST classifier.")
    parser.add_argument("--model-id", default=defaults.model_id)
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default=defaults.arch)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--no-augment", dest="augment", action="store_false")
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--width", type=int, default=defaults.width, help="channels of the first conv layer")
    parser.add_argument("--hidden", type=int, default=defaults.hidden, help="units of the hidden linear layer")
    parser.add_argument(
        "--pixel-transform",
        choices=PIXEL_TRANSFORMS,
        default=defaults.pixel_transform,
        help="transform of the uint8 pixels of both splits before normalisation (invert: 255 - pixel)",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: models/<model-id>")
    args = vars(parser.parse_args(argv))
    out = args.pop("out") or MODELS_DIR / args["model_id"]
    return TrainConfig(**args), out


def main(argv: list[str] | None = None) -> None:
    """Train, export, write the card."""
    config, out = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    command = "python -m serve_app.training.train" + ("" if not argv else " " + shlex.join(argv))
    model, metrics = train(config)
    digests = export(model, out)
    write_card(out, config, model, metrics, digests, command)
    print(f"test accuracy {metrics['test_accuracy']:.2%}; wrote {out}")


if __name__ == "__main__":
    main()
