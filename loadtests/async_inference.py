"""Asynchronous inference: submit to /tasks, poll to completion, measure the end-to-end time.

Each user POSTs real digits to ``/tasks`` (202 and a task id), then polls ``GET /tasks/{id}``
every ``--poll-s`` seconds until the task has ``succeeded`` (its result must be a valid
prediction) or ``failed``, or ``--task-timeout-s`` passes. The end-to-end time, submit to
result, is reported as its own entry ("TASK end-to-end") beside the HTTP calls.

Verdict: ``--max-fail-ratio`` (0.001, over the HTTP calls and the tasks), ``--max-e2e-p95-ms``
(10000) and ``--max-lost-tasks`` (0: tasks that neither succeeded nor failed in time).

Usage (the local run starts Redis and the TaskConsumer itself)::

    locust -f loadtests/async_inference.py --host http://localhost:8000 --headless -u 4 -r 4 -t 60s --csv results/async
"""

from __future__ import annotations

import time
from collections import Counter

import gevent
from _common import DigitsUser, Option, ScenarioRun, Threshold, prediction_problem
from _verdict import Check, percentile
from locust import events, task

END_TO_END = "end-to-end"
#: how the run's tasks ended: succeeded, failed, invalid (a wrong result), error (polling failed), lost
OUTCOMES: Counter[str] = Counter()


def end_to_end_ms(run: ScenarioRun) -> list[float]:
    """End-to-end times of the tasks that succeeded, ms."""
    return [s.ms for s in run.samples if s.name == END_TO_END and s.ok]


def async_checks(run: ScenarioRun) -> list[Check]:
    """The 95th percentile of the end-to-end time, and the tasks never finished."""
    lost = OUTCOMES["lost"]
    return [
        Check("task end-to-end p95", percentile(end_to_end_ms(run), 95), run.option("max-e2e-p95-ms"), "<=", " ms"),
        Check("tasks lost (no result in time)", lost, run.option("max-lost-tasks")),
    ]


def async_report(run: ScenarioRun) -> dict:
    """Percentiles of the end-to-end time."""
    times = end_to_end_ms(run)
    return {
        "task_outcomes": dict(OUTCOMES),
        "end_to_end_ms": {f"p{q}": percentile(times, q) for q in (50, 95, 99)},
    }


RUN = ScenarioRun(
    "async",
    thresholds=[
        Threshold("max-fail-ratio", 0.001, "largest share of failed requests and tasks"),
        Threshold("max-e2e-p95-ms", 10000, "largest p95 of the submit-to-result time, ms"),
        Threshold("max-lost-tasks", 0, "most tasks without a result within --task-timeout-s"),
    ],
    options=[
        Option("poll-s", 0.2, "seconds between polls of a task", type=float),
        Option("task-timeout-s", 60.0, "a task without a result after this many seconds is lost", type=float),
        Option("images-per-request", 1, "digits per task", type=int),
    ],
    extra_checks=async_checks,
    extra_report=async_report,
)


@events.test_start.add_listener
def reset_outcomes(**_) -> None:
    """Each run counts its own tasks."""
    OUTCOMES.clear()


class AsyncUser(DigitsUser):
    """Submits a task, polls it to the end, and reports the end-to-end time."""

    @task
    def submit_and_wait(self) -> None:
        """Submit one task and wait for its end; report the end-to-end time."""
        images, _ = RUN.digits
        count = RUN.option("images-per-request")
        chosen = images[self.rng.integers(0, len(images), size=count)]
        started = time.perf_counter()
        with self.client.post(
            "/tasks", json={"image": chosen.tolist()}, timeout=RUN.option("request-timeout"), catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"expected 202, got {response.status_code}: {response.text[:200]}")
                return
            task_id = response.json()["task_id"]
        outcome, problem = self.wait_for(task_id, count, started)
        OUTCOMES[outcome] += 1
        self.environment.events.request.fire(
            request_type="TASK",
            name=END_TO_END,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=None if outcome == "succeeded" else RuntimeError(problem),
            response=None,
            context={},
        )

    def wait_for(self, task_id: str, count: int, started: float) -> tuple[str, str]:
        """Poll until the task ends; ``(state, problem)``, state ``lost`` after the timeout."""
        deadline = started + RUN.option("task-timeout-s")
        while time.perf_counter() < deadline:
            with self.client.get(
                f"/tasks/{task_id}", name="/tasks/{id}", timeout=RUN.option("request-timeout"), catch_response=True
            ) as response:
                if response.status_code != 200:
                    response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                    return "error", f"polling answered {response.status_code}"
                body = response.json()
            if body["state"] == "succeeded":
                problem = prediction_problem(body.get("result"), count)
                return ("succeeded", "") if problem is None else ("invalid", problem)
            if body["state"] == "failed":
                return "failed", f"the task failed: {body.get('error')}"
            gevent.sleep(RUN.option("poll-s"))
        return "lost", f"no result after {RUN.option('task-timeout-s'):g} s"
