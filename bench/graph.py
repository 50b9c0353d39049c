"""Single-image latency and throughput through the whole graph, beside the raw model.

    python -m bench.graph                       # 8 s per point, concurrency 1, 8, 32
    python -m bench.graph --duration 15 --concurrency 1 8 32 64

Starts the app from ``charts/mnist-serve/files/serve-config.yaml`` on a local Ray (as the main command
does), drives ``POST /predict`` with one real digit per request using wrk, and
times the raw TorchScript model in this process at batch 1 and 32. Prints one
table; ``--json`` also writes the figures to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import requests
import torch

from bench.wrk import WrkResult, require_wrk, run_wrk
from serve_app.config import DEFAULT_MODEL_ID
from serve_app.local.cluster import local_cluster
from serve_app.local.ports import free_port
from serve_app.local.serve_config import load_serve_config
from serve_app.model import load_model, model_dir, predict
from serve_app.training.examples import EXAMPLES_DIR, load_examples
from serve_app.transforms import to_model_input


def raw_model_images_per_s(batch_size: int, seconds: float = 3.0) -> float:
    """Images/s of the served artefact called in-process on real digits (normalised once, outside the timing)."""
    model = load_model(model_dir(DEFAULT_MODEL_ID) / "model.pt")
    return images_per_s(model, real_digit_batch(batch_size), seconds=seconds, warmup_calls=20)


def real_digit_batch(batch_size: int) -> torch.Tensor:
    """``batch_size`` normalised real digits (the ten shipped ones, cycled)."""
    images, _ = load_examples()
    return to_model_input(np.resize(images, (batch_size, 28, 28))[:, None])


def images_per_s(
    model: torch.nn.Module,
    images: torch.Tensor,
    max_images_per_call: int | None = None,
    seconds: float = 2.0,
    warmup_calls: int = 2,
) -> float:
    """Images/s of ``predict`` on ``images`` over at least ``seconds``, after ``warmup_calls`` untimed calls."""
    for _ in range(warmup_calls):
        predict(model, images, max_images_per_call)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        predict(model, images, max_images_per_call)
        done += images.shape[0]
    return done / (time.perf_counter() - started)


def machine_description() -> str:
    """CPU count and model, for the table's caption."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return f"{os.cpu_count()} CPUs ({model}), torch {torch.__version__}, {torch.get_num_threads()} torch threads"


def format_table(results: list[WrkResult], raw: dict[int, float]) -> str:
    """The benchmark's table, in Markdown."""
    lines = [
        "| path | concurrency | images/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        lines.append(
            f"| HTTP /predict, whole graph, 1 image/request | {result.connections} | {result.requests_per_s:,.0f} | "
            f"{result.p50_ms:.1f} | {result.p99_ms:.1f} | {result.errors + result.non_2xx} |"
        )
    for batch_size, images_per_s in raw.items():
        lines.append(f"| raw model in-process, batch {batch_size} | - | {images_per_s:,.0f} | - | - | - |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    require_wrk()

    raw = {batch: raw_model_images_per_s(batch) for batch in (1, 32)}
    body = (EXAMPLES_DIR / "digit.json").read_bytes()
    config = load_serve_config(http_port=free_port(), grpc_port=free_port())
    with local_cluster(config, dashboard_port=free_port(), log_to_driver=False) as cluster:
        url = cluster.http_url + "/predict"
        assert requests.post(url, data=body, timeout=60).json()["predicted_label"] == [7]
        run_wrk(url, body, connections=8, duration_s=2)  # warm-up
        results = [run_wrk(url, body, connections=c, duration_s=args.duration) for c in args.concurrency]

    print(f"\nmachine: {machine_description()}; {args.duration:g} s per point, wrk\n")
    print(format_table(results, raw))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"http": [asdict(r) for r in results], "raw_images_per_s": raw, "machine": machine_description()},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
