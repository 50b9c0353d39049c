"""Serve's default router versus LatencyAwareRouter, with one of two Classifier replicas slowed.

    python -m bench.router                          # 20 s per router, 16 connections, +40 ms on rank 0
    python -m bench.router --duration 30 --delay-ms 80 --json /tmp/router.json

Starts one local Ray and deploys the app from the one Serve config twice in turn, changing only
the Classifier: 2 replicas, the one with replica rank ``--slow-rank`` slowed by ``--delay-ms``
per request, and

* **default**: Serve's own router (power of two choices, model affinity);
* **latency-aware**: ``serve_app.router:LatencyAwareRouter``.

Both runs collect routing stats every ``--stats-period-s`` (so both pay the same stats calls).
Each run's application has its own name (``mnist-default``, ``mnist-latency-aware``) and the
first is deleted before the second is deployed: Serve's client caches handles by deployment
and application name, and a handle keeps the router object it built, so under the same name
this process would go on routing with the first run's router.

Before each measurement a burst of Classifier calls straight from this process makes both
replicas load the model (otherwise the default router would keep every request on whichever
replica loaded it first: the Ingress sends at most two batches at a time, never enough to fill
one replica), then wrk warms up at the measured concurrency (the latency router learns the
replicas' latencies). Each run drives ``POST /predict`` with one real digit per request; the
table shows both routers side by side.

**The slowdown is a test-only knob of the Classifier** (its ``user_config``, default off):
``debug_delay_ms`` (float, ms added to every ``predict`` call) and ``debug_slow_rank`` (int: the
replica whose ``ReplicaRank.rank`` equals it is the slowed one; ranks are 0..replicas-1, given
by Serve). Until the Classifier accepts them, the deploy fails and this script says so.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

from bench.wrk import WrkResult, require_wrk, run_wrk
from serve_app.config import APP_NAME, DEFAULT_MODEL_ID, SERVE_CONFIG_PATH
from serve_app.local.cluster import local_cluster
from serve_app.local.dashboard import DashboardClient, DeployFailedError
from serve_app.local.ports import free_port
from serve_app.local.serve_config import load_serve_config
from serve_app.training.examples import EXAMPLES_DIR

CLASSIFIER = "Classifier"
LATENCY_AWARE_ROUTER = "serve_app.router:LatencyAwareRouter"
ROUTERS = ("default", "latency-aware")


def run_app_name(router: str, app_name: str = APP_NAME) -> str:
    """The application's name in one router's run."""
    return f"{app_name}-{router}"


def _application(config: dict[str, Any], app_name: str) -> dict[str, Any]:
    for app in config["applications"]:
        if app["name"] == app_name:
            return app
    raise KeyError(f"no application {app_name!r}")


def _classifier(config: dict[str, Any], app_name: str) -> dict[str, Any]:
    """The Classifier's entry in ``deployments:`` of the named application (KeyError if absent)."""
    for deployment in _application(config, app_name).get("deployments", []):
        if deployment["name"] == CLASSIFIER:
            return deployment
    raise KeyError(f"no {CLASSIFIER} deployment in application {app_name!r}")


def router_configs(
    base: dict[str, Any],
    *,
    delay_ms: float,
    slow_rank: int = 0,
    replicas: int = 2,
    stats_period_s: float = 1.0,
    router_kwargs: dict[str, Any] | None = None,
    app_name: str = APP_NAME,
) -> dict[str, dict[str, Any]]:
    """``{"default": config, "latency-aware": config}``: ``base`` with only its Classifier changed.

    Both: ``replicas`` fixed replicas (no autoscaling), the debug slowdown added to its
    ``user_config``, routing stats every ``stats_period_s``, the application renamed
    :func:`run_app_name`. The second also names the latency-aware router (and its
    ``router_kwargs``, if any). ``base`` is left as it was.
    """
    configs = {}
    for router in ROUTERS:
        config = copy.deepcopy(base)
        _application(config, app_name)["name"] = run_app_name(router, app_name)
        classifier = _classifier(config, run_app_name(router, app_name))
        classifier.pop("autoscaling_config", None)
        classifier["num_replicas"] = replicas
        classifier["user_config"] = {
            **(classifier.get("user_config") or {}),
            "debug_delay_ms": delay_ms,
            "debug_slow_rank": slow_rank,
        }
        router_config: dict[str, Any] = {"request_routing_stats_period_s": stats_period_s}
        if router == "latency-aware":
            router_config["request_router_class"] = LATENCY_AWARE_ROUTER
            if router_kwargs:
                router_config["request_router_kwargs"] = dict(router_kwargs)
        classifier["request_router_config"] = router_config
        configs[router] = config
    return configs


def logical_cpus_needed(config: dict[str, Any]) -> float:
    """CPUs the config's deployments ask for (Serve's defaults: 1 replica, 1 CPU)."""
    total = 0.0
    for app in config["applications"]:
        for deployment in app.get("deployments", []):
            num_cpus = (deployment.get("ray_actor_options") or {}).get("num_cpus", 1)
            total += deployment.get("num_replicas", 1) * num_cpus
    return total


def wait_until_deleted(dashboard: DashboardClient, app_names: list[str], timeout_s: float = 120) -> None:
    """Block until none of the named applications is listed any more."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not set(app_names) & set(dashboard.application_statuses()):
            return
        time.sleep(1)
    raise DeployFailedError(f"{app_names} still listed after {timeout_s} s")


def load_model_everywhere(app_name: str, model_id: str, calls: int) -> None:
    """Many concurrent Classifier calls for ``model_id`` from this driver.

    More calls than the replicas holding it take (``max_ongoing_requests`` each) make the routers
    fall back to the replicas without the model, so every replica loads it.
    """
    from ray import serve

    handle = serve.get_deployment_handle(CLASSIFIER, app_name=app_name).options(multiplexed_model_id=model_id)
    images = np.zeros((1, 1, 28, 28), dtype=np.float32)
    responses = [handle.predict.remote(images, model_id) for _ in range(calls)]
    for response in responses:
        response.result(timeout_s=120)


def format_table(results: dict[str, WrkResult]) -> str:
    """Both routers side by side, in Markdown."""
    lines = [
        "| router | req/s | p50 ms | p90 ms | p99 ms | max ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for router, r in results.items():
        lines.append(
            f"| {router} | {r.requests_per_s:,.0f} | {r.p50_ms:.1f} | {r.p90_ms:.1f} | {r.p99_ms:.1f} | "
            f"{r.max_ms:.1f} | {r.errors + r.non_2xx} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module's documentation)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=SERVE_CONFIG_PATH, help="the Serve config to start from")
    parser.add_argument("--duration", type=int, default=20, help="seconds measured per router")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of wrk warm-up per router")
    parser.add_argument("--concurrency", type=int, default=16, help="wrk connections")
    parser.add_argument("--delay-ms", type=float, default=40.0, help="added to every call on the slowed replica")
    parser.add_argument("--slow-rank", type=int, default=0, help="replica rank of the slowed replica")
    parser.add_argument("--replicas", type=int, default=2, help="Classifier replicas")
    parser.add_argument("--stats-period-s", type=float, default=1.0, help="request_routing_stats_period_s")
    parser.add_argument(
        "--router-kwargs", type=json.loads, default=None, help='request_router_kwargs, JSON: {"num_tiers": 2}'
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 0 or args.concurrency < 1 or args.replicas < 1:
        parser.error("--duration and --concurrency must be >= 1, --warmup >= 0, --replicas >= 1")
    if not 0 <= args.slow_rank < args.replicas:
        parser.error("--slow-rank must be one of the replicas' ranks: 0 .. replicas-1")
    if args.delay_ms < 0 or args.stats_period_s <= 0:
        parser.error("--delay-ms must be >= 0 and --stats-period-s > 0")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run both routers and print the table."""
    args = parse_args(argv)
    require_wrk()
    base = load_serve_config(args.config.resolve(), http_port=free_port(), grpc_port=free_port())
    configs = router_configs(
        base,
        delay_ms=args.delay_ms,
        slow_rank=args.slow_rank,
        replicas=args.replicas,
        stats_period_s=args.stats_period_s,
        router_kwargs=args.router_kwargs,
    )
    body = (EXAMPLES_DIR / "digit.json").read_bytes()
    max_ongoing = int(_classifier(configs["default"], run_app_name("default")).get("max_ongoing_requests", 32))
    num_cpus = max(os.cpu_count() or 1, int(logical_cpus_needed(configs["default"]) + 0.999))

    results: dict[str, WrkResult] = {}
    try:
        with local_cluster(
            configs["default"], dashboard_port=free_port(), log_to_driver=False, num_cpus=num_cpus
        ) as cluster:
            url = cluster.http_url + "/predict"
            previous: str | None = None
            for router, config in configs.items():
                app_name = run_app_name(router)
                if previous is not None:  # one at a time: both serve on the same route prefix
                    cluster.dashboard.deploy({**config, "applications": []})
                    wait_until_deleted(cluster.dashboard, [previous])
                    cluster.dashboard.deploy(config)
                    cluster.dashboard.wait_until_running([app_name])
                previous = app_name
                assert requests.post(url, data=body, timeout=60).json()["predicted_label"] == [7]
                for _ in range(2):
                    load_model_everywhere(app_name, DEFAULT_MODEL_ID, calls=(args.replicas + 1) * max_ongoing)
                if args.warmup:
                    run_wrk(url, body, connections=args.concurrency, duration_s=args.warmup)
                results[router] = run_wrk(url, body, connections=args.concurrency, duration_s=args.duration)
                print(f"{router}: {results[router]}", flush=True)
    except DeployFailedError as exc:
        raise SystemExit(
            f"deploy failed: {exc}\nDoes the Classifier accept user_config debug_delay_ms and debug_slow_rank, "
            "and define record_routing_stats()? (see bench/router.py)"
        ) from exc

    classifier = _classifier(configs["latency-aware"], run_app_name("latency-aware"))
    print(
        f"\n{args.replicas} Classifier replicas, rank {args.slow_rank} slowed by {args.delay_ms:g} ms; "
        f"wrk {args.concurrency} connections, {args.duration} s per router, 1 real digit per request"
    )
    print(f"latency-aware request_router_config: {json.dumps(classifier['request_router_config'])}\n")
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps({router: vars(r) for router, r in results.items()}, indent=2))


if __name__ == "__main__":
    main()
