r"""Autoscaling: ramp the users up, hold, ramp down, and watch the Classifier's replicas follow.

A ``LoadTestShape`` drives the run (``-u``/``-t`` are ignored): from 1 user to ``--peak-users``
over ``--ramp-s`` seconds, ``--hold-s`` at the peak, back to 1 user over ``--ramp-s``, then
``--tail-s`` at ``--tail-users`` (1; 0 leaves the service idle, to see the scale-down, to zero
where the Serve config allows it, when ``downscale_delay_s`` is shorter). Users POST real digits
to ``/predict`` back to back.

Verdict: ``--max-fail-ratio`` (0.01), ``--max-p99-ms`` (5000), ``--min-peak-replicas`` (2: the
deployment ``--watch-deployment``, Classifier, must reach that many RUNNING replicas) and
``--max-scale-up-s`` (60: from the start of the run to the first added replica; Serve's
``upscale_delay_s`` plus a replica's start time).

Usage (a local run whose Classifier may scale from 0 to 4 on a small machine)::

    python -m serve_app.local --set Classifier.ray_actor_options.num_cpus=0.3 \\
        --set Classifier.autoscaling_config.max_replicas=4 --set Classifier.autoscaling_config.downscale_delay_s=20 \\
        --set Classifier.autoscaling_config.target_ongoing_requests=1
    locust -f loadtests/autoscaling.py --host http://localhost:8000 --headless --tail-users 0 --csv results/autoscaling
"""

from __future__ import annotations

from _common import DigitsUser, Option, ScenarioRun, Threshold, post_digits
from _shapes import ramp_users
from _verdict import Check
from locust import LoadTestShape, task


def scaling_checks(run: ScenarioRun) -> list[Check]:
    """Peak replicas of the watched deployment, and how soon the first replica was added."""
    name = run.option("watch-deployment")
    counts = [(s.at, s.running.get(name, 0)) for s in run.snapshots if s.reachable]
    peak = max((count for _, count in counts), default=None)
    first = counts[0][1] if counts else 0
    scale_up = next((at - run.started_at for at, count in counts if count > first), None)
    return [
        Check(f"peak {name} replicas", peak, run.option("min-peak-replicas"), ">="),
        Check(
            f"first {name} scale-up after",
            scale_up,
            run.option("max-scale-up-s"),
            "<=",
            " s",
            note="" if scale_up is not None else "no scale-up seen",
        ),
    ]


def scaling_report(run: ScenarioRun) -> dict:
    """Replica counts of the watched deployment over time, for the verdict JSON."""
    name = run.option("watch-deployment")
    counts = [(round(s.at - run.started_at, 1), s.running.get(name, 0)) for s in run.snapshots if s.reachable]
    changes = [point for i, point in enumerate(counts) if i == 0 or point[1] != counts[i - 1][1]]
    return {"deployment": name, "replica_changes": changes}


RUN = ScenarioRun(
    "autoscaling",
    thresholds=[
        Threshold("max-fail-ratio", 0.01, "largest share of failed requests"),
        Threshold("max-p99-ms", 5000, "largest p99 latency, ms"),
        Threshold("min-peak-replicas", 2, "fewest RUNNING replicas the watched deployment must reach"),
        Threshold("max-scale-up-s", 60, "longest time until the watched deployment gains a replica, s"),
    ],
    options=[
        Option("peak-users", 32, "users at the peak", type=int),
        Option("ramp-s", 60.0, "seconds of each ramp", type=float),
        Option("hold-s", 60.0, "seconds at the peak", type=float),
        Option("tail-s", 60.0, "seconds at --tail-users after the ramp down", type=float),
        Option("tail-users", 1, "users after the ramp down (0: idle)", type=int),
        Option("watch-deployment", "Classifier", "the deployment whose replicas the verdict checks"),
    ],
    extra_checks=scaling_checks,
    extra_report=scaling_report,
)


class RampShape(LoadTestShape):
    """Ramp up, hold, ramp down, tail (see :func:`_shapes.ramp_users`)."""

    def tick(self) -> tuple[int, float] | None:
        """Users and spawn rate now; None ends the run."""
        users = ramp_users(
            self.get_run_time(),
            RUN.option("peak-users"),
            RUN.option("ramp-s"),
            RUN.option("hold-s"),
            RUN.option("tail-s"),
            RUN.option("tail-users"),
        )
        return None if users is None else (users, max(1.0, RUN.option("peak-users") / 10))


class AutoscalingUser(DigitsUser):
    """POSTs one real digit to /predict, back to back."""

    @task
    def classify(self) -> None:
        """One request."""
        post_digits(self, RUN)
