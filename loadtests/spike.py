"""Spike: a burst of users far past capacity; overload must be answered fast, then service recover.

A ``LoadTestShape`` runs ``--baseline-users`` for ``--baseline-s``, jumps to ``--spike-users``
(all spawned at once) for ``--spike-s``, and drops back to the baseline for ``--recover-s``.
Every user POSTs real digits back to back. Past capacity Serve answers 503 (its back-pressure at
the Ingress, or the Ingress's own when the Classifier's queue is full) or 429; those are failures
in Locust's stats, named "overloaded".

Verdict:

* ``--max-timeouts`` (0): requests that hit the client timeout (``--request-timeout``) or lost
  their connection instead of an answer;
* ``--min-fast-reject-share`` (0.95): overload answers (503/429) that came within
  ``--fast-reject-ms`` (100), among all overload answers and timeouts;
* ``--max-other-errors`` (0): any other failure (a 500, a wrong answer);
* ``--max-recovery-s`` (15): from the end of the spike to the start of ``--recovery-window-s``
  (3) seconds of successes only.

Usage::

    locust -f loadtests/spike.py --host http://localhost:8000 --headless --csv results/spike
"""

from __future__ import annotations

import math

from _common import OVERLOAD_STATUSES, DigitsUser, Option, ScenarioRun, Threshold, post_digits
from _shapes import spike_phase
from _verdict import Check, recovery_after
from locust import LoadTestShape, task


def spike_figures(run: ScenarioRun) -> dict:
    """Overload answers, how fast they came, timeouts, other errors, and the recovery time."""
    overload = [s for s in run.samples if s.status in OVERLOAD_STATUSES]
    fast = [s for s in overload if s.ms <= run.option("fast-reject-ms")]
    timeouts = [s for s in run.samples if not s.ok and s.status == 0]
    others = [s for s in run.samples if not s.ok and s.status != 0 and s.status not in OVERLOAD_STATUSES]
    spike_end = run.started_at + run.option("baseline-s") + run.option("spike-s")
    recovery = recovery_after([(s.at, s.ok) for s in run.samples], spike_end, run.option("recovery-window-s"))
    overload_ms = sorted(s.ms for s in overload)
    return {
        "overload_answers": len(overload),
        "fast_overload_answers": len(fast),
        "overload_median_ms": overload_ms[len(overload_ms) // 2] if overload_ms else None,
        "overload_max_ms": overload_ms[-1] if overload_ms else None,
        "timeouts": len(timeouts),
        "other_errors": len(others),
        "fast_reject_share": len(fast) / (len(overload) + len(timeouts)) if overload or timeouts else None,
        "recovery_s": recovery,
    }


def spike_checks(run: ScenarioRun) -> list[Check]:
    """The spike's verdict (see the module's documentation)."""
    figures = spike_figures(run)
    return [
        Check("timeouts and lost connections", figures["timeouts"], run.option("max-timeouts")),
        Check(
            f"overload answered within {run.option('fast-reject-ms'):g} ms",
            figures["fast_reject_share"],
            run.option("min-fast-reject-share"),
            ">=",
            note=f"{figures['fast_overload_answers']} of {figures['overload_answers']} 503/429"
            if figures["overload_answers"]
            else "no 503/429: the spike stayed within capacity",
        ),
        Check("other errors", figures["other_errors"], run.option("max-other-errors")),
        Check(
            "recovery after the spike",
            math.inf if figures["recovery_s"] is None else figures["recovery_s"],
            run.option("max-recovery-s"),
            "<=",
            " s",
            note="" if figures["recovery_s"] is not None else "never recovered before the end of the run",
        ),
    ]


RUN = ScenarioRun(
    "spike",
    thresholds=[
        Threshold("max-timeouts", 0, "most requests answered by a timeout or a lost connection"),
        Threshold("min-fast-reject-share", 0.95, "least share of overload answered within --fast-reject-ms"),
        Threshold("max-other-errors", 0, "most failures other than 503/429 and timeouts"),
        Threshold("max-recovery-s", 15, "longest time from the end of the spike to steady successes, s"),
    ],
    options=[
        Option("baseline-users", 2, "users before and after the spike", type=int),
        Option("spike-users", 300, "users during the spike", type=int),
        Option("baseline-s", 10.0, "seconds before the spike", type=float),
        Option("spike-s", 15.0, "seconds of the spike", type=float),
        Option("recover-s", 30.0, "seconds after the spike", type=float),
        Option("fast-reject-ms", 100.0, "an overload answer within this many ms is fast", type=float),
        Option("recovery-window-s", 3.0, "seconds of successes only that mean recovered", type=float),
    ],
    extra_checks=spike_checks,
    extra_report=spike_figures,
)


class SpikeShape(LoadTestShape):
    """Baseline, spike (every spike user at once), baseline again."""

    def tick(self) -> tuple[int, float] | None:
        """Users and spawn rate now; None ends the run."""
        phase = spike_phase(
            self.get_run_time(), RUN.option("baseline-s"), RUN.option("spike-s"), RUN.option("recover-s")
        )
        if phase is None:
            return None
        if phase == "spike" and not any(label == "spike" for _, label in RUN.events):
            RUN.mark("spike")
        if phase == "recover" and not any(label == "spike over" for _, label in RUN.events):
            RUN.mark("spike over")
        users = RUN.option("spike-users") if phase == "spike" else RUN.option("baseline-users")
        # the rate applies to stopping users too: the spike ends at once, as it starts
        return users, float(max(RUN.option("spike-users"), 1))


class SpikeUser(DigitsUser):
    """POSTs one real digit to /predict, back to back."""

    @task
    def classify(self) -> None:
        """One request."""
        post_digits(self, RUN)
