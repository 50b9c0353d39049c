"""Images/s of the served model per batch size: one model call versus calls of at most N images.

    python -m bench.model_batch                      # 1 torch thread (a Classifier replica's), 2 s per point
    python -m bench.model_batch --threads 1 2 --split 128 --plot /tmp/model-batch.png

The Classifier merges concurrent calls, and the Ingress merges concurrent requests before them,
so one model call can carry thousands of images under bulk load (16 calls of 16 requests of 64
digits). This benchmark times the served artefact in this process on real digits for batch
sizes from 32 to 4096, once as a single call and once split into calls of at most ``--split``
images (what the Classifier's ``max_images_per_model_call`` does), at each ``--threads`` count.
It prints one table and writes a plot; the Serve config's default comes from it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.graph import images_per_s, machine_description, real_digit_batch
from serve_app.config import DEFAULT_MAX_IMAGES_PER_MODEL_CALL, DEFAULT_MODEL_ID
from serve_app.model import load_model, model_dir

BATCH_SIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)


@dataclass(frozen=True)
class Point:
    """Images/s of one (threads, batch size, split) setting: the best of the rounds."""

    threads: int
    batch_size: int
    split: int | None  # None: one model call
    images_per_s: float


def measure(threads: Sequence[int], batch_sizes: Sequence[int], split: int, seconds: float, rounds: int) -> list[Point]:
    """Every (threads, batch size, one call | split) point; rounds interleave so noise hits all alike."""
    model = load_model(model_dir(DEFAULT_MODEL_ID) / "model.pt")
    best: dict[tuple[int, int, int | None], float] = {}
    threads_before = torch.get_num_threads()
    try:
        for _ in range(rounds):
            for count in threads:
                torch.set_num_threads(count)
                for batch_size in batch_sizes:
                    images = real_digit_batch(batch_size)
                    for chunk in (None, split):
                        key = (count, batch_size, chunk)
                        best[key] = max(best.get(key, 0.0), images_per_s(model, images, chunk, seconds))
    finally:
        torch.set_num_threads(threads_before)
    return [Point(count, size, chunk, value) for (count, size, chunk), value in best.items()]


def format_table(points: Sequence[Point], split: int) -> str:
    """Markdown: one row per (threads, batch size), one call against split calls."""
    by_key = {(p.threads, p.batch_size, p.split): p.images_per_s for p in points}
    lines = [
        f"| torch threads | batch | one call: images/s | calls of <= {split}: images/s | split / one |",
        "|---|---|---|---|---|",
    ]
    for count, size in sorted({(p.threads, p.batch_size) for p in points}):
        whole, chunked = by_key[(count, size, None)], by_key[(count, size, split)]
        lines.append(f"| {count} | {size} | {whole:,.0f} | {chunked:,.0f} | {chunked / whole:.2f}x |")
    return "\n".join(lines)


def plot(points: Sequence[Point], split: int, path: Path) -> None:
    """Images/s against batch size (log scale), one line per (threads, one call | split)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    for count in sorted({p.threads for p in points}):
        for chunk, style in ((None, "-o"), (split, "--s")):
            series = sorted((p.batch_size, p.images_per_s) for p in points if p.threads == count and p.split == chunk)
            calls = "one call" if chunk is None else f"calls of <= {chunk}"
            label = f"{count} thread{'s' if count > 1 else ''}, {calls}"
            axes.plot([s for s, _ in series], [v for _, v in series], style, label=label)
    axes.set_xscale("log", base=2)
    axes.set_xlabel("images in the merged batch")
    axes.set_ylabel("images/s")
    axes.set_ylim(bottom=0)
    axes.set_title("The served model on this CPU: one call per batch vs split calls")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, measure, print the table, write the plot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch thread counts (default: 1)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    parser.add_argument("--split", type=int, default=DEFAULT_MAX_IMAGES_PER_MODEL_CALL, help="images per split call")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per point and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; each point keeps its best")
    parser.add_argument("--plot", type=Path, default=Path("docs/figures/model-batch.png"))
    args = parser.parse_args(argv)
    if args.split < 1 or min(args.threads) < 1 or min(args.batch_sizes) < 1:
        parser.error("--split, --threads and --batch-sizes must be >= 1")
    points = measure(args.threads, args.batch_sizes, args.split, args.seconds, args.rounds)
    print(f"machine: {machine_description()}")
    print(format_table(points, args.split))
    plot(points, args.split, args.plot)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
