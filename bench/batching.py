"""Dynamic batching off versus on: images/s and latency through HTTP, one digit per request.

    python -m bench.batching                         # 8 s per point, concurrency 1, 8, 32, 64
    python -m bench.batching --duration 15 --plot /tmp/batching.png

Starts the app from the one Serve config on a local Ray, then for each setting PUTs the same
config with only the batching ``user_config`` of the Ingress and the Classifier changed (live,
through ``reconfigure()``, as a ``helm upgrade`` would) and drives ``POST /predict`` with wrk.
"off" is ``max_batch_size: 1`` in both; "on" is the config's own batching. Prints one table,
the issue's two targets as PASS/FAIL, and writes a plot.

Latency at one connection differs between the two settings by less than this machine's noise
from one run to the next, so that target is judged on ``--latency-rounds`` extra runs at one
connection that alternate off and on (the same noise hits both), by the median of their p50s.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.graph import machine_description
from bench.wrk import WrkResult, require_wrk, run_wrk
from serve_app.config import APP_NAME
from serve_app.local.cluster import local_cluster
from serve_app.local.ports import free_port
from serve_app.local.serve_config import load_serve_config
from serve_app.training.examples import EXAMPLES_DIR

BATCHING_OFF = {"max_batch_size": 1, "batch_wait_timeout_s": 0.0}
BATCHED_DEPLOYMENTS = ("Ingress", "Classifier")
#: The issue's targets: images/s with batching at this concurrency >= this many times without.
SPEEDUP_CONCURRENCY = 32
MIN_SPEEDUP = 3.0


@dataclass(frozen=True)
class Target:
    """One target, checked on the measured figures."""

    name: str
    passed: bool | None  # None: not measured
    detail: str

    def line(self) -> str:
        """``PASS|FAIL|n/a  name: detail``."""
        verdict = "n/a" if self.passed is None else ("PASS" if self.passed else "FAIL")
        return f"{verdict:4}  {self.name}: {self.detail}"


def batch_wait_s(config: dict[str, Any]) -> float:
    """The longest a request can wait for batching: the batched deployments' ``batch_wait_timeout_s`` summed."""
    return sum(float((c or {}).get("batch_wait_timeout_s", 0.0)) for c in batching_of(config).values())


def speedup_target(off: Sequence[WrkResult], on: Sequence[WrkResult]) -> Target:
    """Images/s with batching >= :data:`MIN_SPEEDUP` x without, at :data:`SPEEDUP_CONCURRENCY` connections."""
    name = f"batching on >= {MIN_SPEEDUP:g}x off, images/s at concurrency {SPEEDUP_CONCURRENCY}"
    pairs = [(a, b) for a, b in zip(off, on, strict=True) if a.connections == SPEEDUP_CONCURRENCY]
    if not pairs or pairs[0][0].requests_per_s <= 0:
        return Target(name, None, "not measured")
    (a, b) = pairs[0]
    speedup = b.requests_per_s / a.requests_per_s
    return Target(name, speedup >= MIN_SPEEDUP, f"{speedup:.2f}x ({b.requests_per_s:,.0f} vs {a.requests_per_s:,.0f})")


def latency_target(off_p50s: Sequence[float], on_p50s: Sequence[float], wait_s: float) -> Target:
    """Median p50 at one connection with batching <= without + the batching wait (ms)."""
    name = "p50 at concurrency 1: on <= off + batch_wait_timeout_s"
    if not off_p50s or not on_p50s:
        return Target(name, None, "not measured")
    off_ms, on_ms = statistics.median(off_p50s), statistics.median(on_p50s)
    limit_ms = off_ms + wait_s * 1000
    rounds = f"median of {len(on_p50s)} alternating runs"
    return Target(name, on_ms <= limit_ms, f"{on_ms:.1f} ms vs {off_ms:.1f} + {wait_s * 1000:g} ms ({rounds})")


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
    parser.add_argument(
        "--latency-rounds", type=int, default=5, help="alternating off/on runs at one connection for the latency target"
    )
    args = parser.parse_args(argv)
    require_wrk()

    base = load_serve_config(http_port=free_port(), grpc_port=free_port())
    body = (EXAMPLES_DIR / "digit.json").read_bytes()
    settings = {"off": with_batching(base, BATCHING_OFF), "on": with_batching(base, None)}
    results: dict[str, list[WrkResult]] = {}
    p50s: dict[str, list[float]] = {label: [] for label in settings}
    with local_cluster(settings["off"], dashboard_port=free_port(), log_to_driver=False) as cluster:
        url = cluster.http_url + "/predict"

        def switch_to(config: dict[str, Any]) -> None:
            cluster.dashboard.deploy(config)
            cluster.dashboard.wait_until_running([APP_NAME])
            time.sleep(3)  # reconfigure() reaches every replica
            assert requests.post(url, data=body, timeout=60).json()["predicted_label"] == [7]
            run_wrk(url, body, connections=8, duration_s=2)  # warm-up

        for label, config in settings.items():
            switch_to(config)
            results[label] = [run_wrk(url, body, connections=c, duration_s=args.duration) for c in args.concurrency]
        for _ in range(args.latency_rounds):
            for label, config in settings.items():
                switch_to(config)
                p50s[label].append(run_wrk(url, body, connections=1, duration_s=args.duration).p50_ms)

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
    targets = [
        speedup_target(results["off"], results["on"]),
        latency_target(p50s["off"], p50s["on"], batch_wait_s(settings["on"])),
    ]
    print(f"\np50 at 1 connection, alternating runs: off {p50s['off']}, on {p50s['on']} (ms)")
    print("\n".join(target.line() for target in targets))
    plot(results, args.plot)
    print(f"\nplot: {args.plot}")
    if args.json:
        figures = {k: [vars(r) for r in v] for k, v in results.items()}
        args.json.write_text(json.dumps({**figures, "p50_rounds_ms": p50s}, indent=2))


if __name__ == "__main__":
    main()
