"""Dynamic batching off versus on: images/s and latency through HTTP, one digit per request.

    python -m bench.batching                         # 8 s per point, concurrency 1, 8, 32, 64
    python -m bench.batching --duration 15 --plot /tmp/batching.png

Starts the app from the one Serve config on a local Ray, then for each setting PUTs the same
config with only the batching ``user_config`` of the Ingress and the Classifier changed (live,
through ``reconfigure()``, as a ``helm upgrade`` would) and drives ``POST /predict`` with wrk.
"off" is ``max_batch_size: 1`` in both; "on" is the config's own batching. Prints one table
and writes a plot.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import requests

from bench.graph import machine_description
from bench.wrk import WrkResult, require_wrk, run_wrk
from serve_app.config import APP_NAME
from serve_app.examples import EXAMPLES_DIR
from serve_app.local import load_serve_config, local_cluster
from serve_app.ports import free_port

BATCHING_OFF = {"max_batch_size": 1, "batch_wait_timeout_s": 0.0}
BATCHED_DEPLOYMENTS = ("Ingress", "Classifier")


def with_batching(config: dict[str, Any], user_config: dict[str, Any] | None) -> dict[str, Any]:
    """The config with the batching user_config of the Ingress and Classifier replaced (None: as is)."""
    config = copy.deepcopy(config)
    if user_config is not None:
        for deployment in config["applications"][0]["deployments"]:
            if deployment["name"] in BATCHED_DEPLOYMENTS:
                deployment["user_config"] = dict(user_config)
    return config


def batching_of(config: dict[str, Any]) -> dict[str, Any]:
    """Deployment -> batching user_config, for the table's caption."""
    deployments = config["applications"][0]["deployments"]
    return {d["name"]: d.get("user_config") for d in deployments if d["name"] in BATCHED_DEPLOYMENTS}


def plot(results: dict[str, list[WrkResult]], path: Path) -> None:
    """Images/s and p50/p99 against concurrency, batching off and on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4))
    for label, runs in results.items():
        levels = [r.connections for r in runs]
        throughput.plot(levels, [r.requests_per_s for r in runs], marker="o", label=f"batching {label}")
        latency.plot(levels, [r.p50_ms for r in runs], marker="o", label=f"p50, batching {label}")
        latency.plot(levels, [r.p99_ms for r in runs], marker="x", linestyle="--", label=f"p99, batching {label}")
    for axis in (throughput, latency):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent connections")
        axis.grid(True, alpha=0.3)
        axis.legend()
    throughput.set_ylabel("images/s (1 digit per request)")
    latency.set_ylabel("latency, ms")
    latency.set_yscale("log")
    figure.suptitle("POST /predict through the whole graph: dynamic batching off vs on")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    """Run both settings and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per point")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--plot", type=Path, default=Path("docs/figures/batching.png"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    require_wrk()

    base = load_serve_config(http_port=free_port())
    body = (EXAMPLES_DIR / "digit.json").read_bytes()
    settings = {"off": with_batching(base, BATCHING_OFF), "on": with_batching(base, None)}
    results: dict[str, list[WrkResult]] = {}
    with local_cluster(settings["off"], dashboard_port=free_port(), log_to_driver=False) as cluster:
        url = cluster.http_url + "/predict"
        for label, config in settings.items():
            cluster.dashboard.deploy(config)
            cluster.dashboard.wait_until_running([APP_NAME])
            time.sleep(3)  # reconfigure() reaches every replica
            assert requests.post(url, data=body, timeout=60).json()["predicted_label"] == [7]
            run_wrk(url, body, connections=8, duration_s=2)  # warm-up
            results[label] = [run_wrk(url, body, connections=c, duration_s=args.duration) for c in args.concurrency]

    print(f"\nmachine: {machine_description()}; {args.duration} s per point, wrk, 1 real digit per request")
    for label, config in settings.items():
        print(f"batching {label}: {json.dumps(batching_of(config))}")
    print("\n| concurrency | off: images/s | on: images/s | on/off | off: p50 / p99 ms | on: p50 / p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for off, on in zip(results["off"], results["on"], strict=True):
        print(
            f"| {off.connections} | {off.requests_per_s:,.0f} | {on.requests_per_s:,.0f} | "
            f"{on.requests_per_s / off.requests_per_s:.2f}x | {off.p50_ms:.1f} / {off.p99_ms:.1f} | "
            f"{on.p50_ms:.1f} / {on.p99_ms:.1f} | {off.errors + off.non_2xx + on.errors + on.non_2xx} |"
        )
    plot(results, args.plot)
    print(f"\nplot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps({k: [vars(r) for r in v] for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
