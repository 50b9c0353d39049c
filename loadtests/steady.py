"""Steady load: a constant number of users classifying real MNIST digits, answers checked.

Every user POSTs real test digits to ``/predict`` back to back (``--think-ms`` between
requests) and checks each answer: one digit 0-9 per image and a probability row summing to 1.

Knobs: ``-u`` users, ``-t`` duration, ``--images-per-request`` (1), ``--think-ms`` (0), plus the
common options of ``_common.py``. Verdict: ``--max-fail-ratio`` (0.001), ``--max-p95-ms`` (500),
``--max-p99-ms`` (1000).

Usage::

    locust -f loadtests/steady.py --host http://localhost:8000 --headless -u 8 -r 8 -t 60s --csv results/steady
"""

from __future__ import annotations

from _common import DigitsUser, Option, ScenarioRun, Threshold, post_digits
from locust import task

RUN = ScenarioRun(
    "steady",
    thresholds=[
        Threshold("max-fail-ratio", 0.001, "largest share of failed requests"),
        Threshold("max-p95-ms", 500, "largest p95 latency, ms"),
        Threshold("max-p99-ms", 1000, "largest p99 latency, ms"),
    ],
    options=[
        Option("images-per-request", 1, "digits per request", type=int),
        Option("think-ms", 0.0, "pause of each user between requests, ms", type=float),
    ],
)


class SteadyUser(DigitsUser):
    """POSTs real digits to /predict, one request after another."""

    def wait_time(self) -> float:
        """The pause between a user's requests, seconds."""
        return RUN.option("think-ms") / 1000

    @task
    def classify(self) -> None:
        """One request."""
        post_digits(self, RUN, count=RUN.option("images-per-request"))
