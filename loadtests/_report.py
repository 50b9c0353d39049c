"""The report files of a run: the timeline as CSV and the plot (PNG), next to Locust's CSV stats.

The timeline has one row per poll (``--poll-interval``, 1 s by default): the time since the run
started, users, requests/s and failures/s and the p50/p99 latency of the requests finished in the
last 5 s (0 and empty when none finished), and the RUNNING replicas of every deployment as the dashboard reports them
(empty when it did not answer).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TIMELINE_FIELDS = ("elapsed_s", "users", "rps", "fails_per_s", "p50_ms", "p99_ms")


@dataclass
class TimelineRow:
    """One poll of a run."""

    elapsed_s: float
    users: int
    rps: float
    fails_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    replicas: Mapping[str, int] | None = field(default_factory=dict)  # None: dashboard unreachable


def deployments_of(rows: Sequence[TimelineRow]) -> list[str]:
    """Every deployment seen in the run, in order of first appearance."""
    names: dict[str, None] = {}
    for row in rows:
        for name in row.replicas or {}:
            names.setdefault(name, None)
    return list(names)


def write_timeline_csv(rows: Sequence[TimelineRow], path: Path) -> Path:
    """``<prefix>_timeline.csv``: one row per poll, a ``replicas_<deployment>`` column per deployment."""
    deployments = deployments_of(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*TIMELINE_FIELDS, *(f"replicas_{name}" for name in deployments)])
        for row in rows:
            replicas = row.replicas
            writer.writerow(
                [
                    f"{row.elapsed_s:.1f}",
                    row.users,
                    f"{row.rps:.2f}",
                    f"{row.fails_per_s:.2f}",
                    "" if row.p50_ms is None else f"{row.p50_ms:.0f}",
                    "" if row.p99_ms is None else f"{row.p99_ms:.0f}",
                    *("" if replicas is None else replicas.get(name, 0) for name in deployments),
                ]
            )
    return path


def plot_timeline(
    rows: Sequence[TimelineRow],
    path: Path,
    title: str,
    events: Sequence[tuple[float, str]] = (),
) -> Path:
    """Three panels over time: requests/s (and failures/s), p50/p99 latency, replicas per deployment.

    ``events`` are ``(elapsed_s, label)`` marks drawn on every panel (faults, spike start/end).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; no display
    import matplotlib.pyplot as plt

    elapsed = [row.elapsed_s for row in rows]
    figure, (load, latency, replicas) = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    load.plot(elapsed, [row.rps for row in rows], label="requests/s", color="tab:blue")
    load.plot(elapsed, [row.fails_per_s for row in rows], label="failures/s", color="tab:red")
    load.set_ylabel("per second")
    users = load.twinx()
    users.plot(elapsed, [row.users for row in rows], label="users", color="tab:gray", linestyle=":")
    users.set_ylabel("users")
    users.set_ylim(bottom=0, top=max([row.users for row in rows], default=0) * 1.1 + 1)
    load.set_ylim(bottom=0)
    load.legend(loc="upper left")
    users.legend(loc="upper right")

    latency.plot(elapsed, [_nan(row.p50_ms) for row in rows], label="p50", color="tab:green")
    latency.plot(elapsed, [_nan(row.p99_ms) for row in rows], label="p99", color="tab:orange")
    latency.set_ylabel("latency (ms)")
    latency.legend(loc="upper left")

    for name in deployments_of(rows):
        counts = [_nan(None if row.replicas is None else row.replicas.get(name, 0)) for row in rows]
        replicas.step(elapsed, counts, where="post", label=name)
    replicas.set_ylabel("RUNNING replicas")
    replicas.set_xlabel("seconds since the start of the run")
    replicas.legend(loc="upper left")
    replicas.yaxis.get_major_locator().set_params(integer=True)
    replicas.set_ylim(bottom=-0.1)

    for at, label in events:
        for axis in (load, latency, replicas):
            axis.axvline(at, color="black", alpha=0.3, linestyle="--")
        load.annotate(label, (at, 1), xycoords=("data", "axes fraction"), rotation=90, va="top", fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def write_json(document: Mapping, path: Path) -> Path:
    """A JSON file (the verdict, the faults) next to the run's CSV files."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
