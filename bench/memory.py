"""Resident memory of each replica kind and of Ray's own processes, under load.

    python -m bench.memory                 # 20 s of load from 8 threads, 10 digits per request

Starts the app from the one Serve config on a local Ray (as the main command does), drives
``POST /predict``, samples every replica's VmRSS once a second and keeps the peak, then reads
the RSS of Ray's system processes (what a head pod runs). The chart's memory requests and
limits come from these figures plus headroom (charts/mnist-serve/README.md, "Resources").
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from pathlib import Path

import requests

from serve_app.config import APP_NAME
from serve_app.local.cluster import local_cluster
from serve_app.local.ports import free_port
from serve_app.local.serve_config import load_serve_config
from serve_app.training.examples import EXAMPLES_DIR

#: Substrings of the command lines of Ray's system processes (the head pod's share).
RAY_SYSTEM_PROCESSES = (
    "gcs_server",
    "raylet",
    "dashboard.py",
    "DashboardA",
    "ServeController",
    "ProxyActor",
    "log_monitor",
    "monitor.py",
)


def rss_mib(pid: int) -> float:
    """Resident set size of a process, in MiB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    line = next(line for line in status.splitlines() if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def ray_system_rss_mib() -> dict[str, float]:
    """RSS of Ray's system processes by kind, summed, in MiB."""
    listing = subprocess.run(["ps", "-eo", "rss,args"], capture_output=True, text=True, check=True).stdout
    totals: dict[str, float] = {}
    for line in listing.splitlines()[1:]:
        rss, _, args = line.strip().partition(" ")
        for kind in RAY_SYSTEM_PROCESSES:
            if kind in args:
                totals[kind] = totals.get(kind, 0.0) + int(rss) / 1024
                break
    return totals


def main(argv: list[str] | None = None) -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    body = (EXAMPLES_DIR / "digits-10.json").read_bytes()
    config = load_serve_config(http_port=free_port(), grpc_port=free_port())
    with local_cluster(config, dashboard_port=free_port(), log_to_driver=False) as cluster:
        stop_at = time.monotonic() + args.seconds
        sent = [0]

        def drive() -> None:
            while time.monotonic() < stop_at:
                requests.post(cluster.http_url + "/predict", data=body, timeout=60).raise_for_status()
                sent[0] += 1

        threads = [threading.Thread(target=drive) for _ in range(args.threads)]
        for thread in threads:
            thread.start()
        peak: dict[str, float] = {}
        while time.monotonic() < stop_at:
            deployments = cluster.dashboard.status()["applications"][APP_NAME]["deployments"]
            for name, deployment in deployments.items():
                for replica in deployment["replicas"]:
                    peak[name] = max(peak.get(name, 0.0), rss_mib(replica["pid"]))
            time.sleep(1)
        for thread in threads:
            thread.join()
        system = ray_system_rss_mib()
    print(f"\n{sent[0]} requests of 10 digits in {args.seconds} s from {args.threads} threads\n")
    print("| process | peak RSS MiB |\n|---|---|")
    for name, value in sorted(peak.items()):
        print(f"| {name} replica | {value:,.0f} |")
    for name, value in sorted(system.items()):
        print(f"| Ray system: {name} | {value:,.0f} |")
    print(f"| Ray system, total (the head pod's share) | {sum(system.values()):,.0f} |")


if __name__ == "__main__":
    main()
