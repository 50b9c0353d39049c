"""What every scenario shares: options, real digits, the replica poller, the verdict, the reports.

A locustfile creates one :class:`ScenarioRun` at import time; it registers Locust event
listeners that

* add the common options (below) and the scenario's thresholds to Locust's command line, each
  also settable by an environment variable ``LOCUST_<OPTION>`` (``--max-fail-ratio`` is
  ``LOCUST_MAX_FAIL_RATIO``);
* on ``test_start``, start a greenlet that polls Serve's status on the dashboard every
  ``--poll-interval`` seconds (replicas per deployment, for the plot and for fault recovery);
* record every request's time, outcome, latency and status code;
* on ``quitting``, check the thresholds, print the verdict, write the reports and set the
  process exit code: 0 when every check passes, 1 otherwise.

Reports go to the ``--csv`` prefix (Locust's own CSV stats are written there too), else to
``loadtests/results/<scenario>-<UTC time>``: ``_stats.csv`` (and Locust's other CSVs),
``_timeline.csv``, ``_verdict.json``, ``.png``.

Common options: ``--dashboard-url`` (http://127.0.0.1:8265; through ``kubectl port-forward
svc/<release>-head-svc 8265`` on Kubernetes), ``--dashboard-token`` (Ray's auth token; default:
``$RAY_AUTH_TOKEN`` or the local ``~/.ray/auth_token``; on Kubernetes the chart's Secret),
``--app-name`` (mnist), ``--poll-interval`` (1 s), ``--request-timeout`` (30 s), ``--digits``
(``examples``: the 10 real test digits shipped in examples/digits; ``mnist``: the whole MNIST
test split).
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent
import numpy as np
from _report import TimelineRow, plot_timeline, write_json, write_timeline_csv
from _serve_status import Snapshot, snapshot_from_status, unreachable
from _verdict import Check, format_checks, percentile, verdict_passed
from locust import HttpUser, events
from locust.env import Environment
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from serve_app.config import APP_NAME
from serve_app.local.dashboard import DEFAULT_DASHBOARD_URL, DashboardClient, read_auth_token

logger = logging.getLogger("mnist-serve.loadtests")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
OVERLOAD_STATUSES = frozenset({429, 503})
#: the timeline's requests/s and percentiles cover the requests finished in the last this many seconds
RATE_WINDOW_S = 5.0


@dataclass(frozen=True)
class Threshold:
    """One verdict threshold, exposed as ``--<name>`` (and ``LOCUST_<NAME>``)."""

    name: str  # option name without dashes, e.g. "max-fail-ratio"
    default: float
    help: str

    @property
    def dest(self) -> str:
        """The attribute on Locust's parsed options."""
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class Sample:
    """One finished request: Unix time, outcome, latency (ms), HTTP status (0: no response)."""

    at: float
    ok: bool
    ms: float
    status: int
    name: str
    timed_out: bool = False


@dataclass(frozen=True)
class Option:
    """A scenario-specific option (not a threshold): ``--<name>``, ``LOCUST_<NAME>``."""

    name: str
    default: Any
    help: str
    type: Callable[[str], Any] = str
    choices: Sequence[str] | None = None

    @property
    def dest(self) -> str:
        """The attribute on Locust's parsed options."""
        return self.name.replace("-", "_")


def _add(parser: Any, name: str, default: Any, help: str, **kwargs: Any) -> None:
    parser.add_argument(
        f"--{name}",
        default=default,
        env_var=f"LOCUST_{name.upper().replace('-', '_')}",
        help=f"{help} (default: {default})",
        **kwargs,
    )


def recent_samples(samples: Sequence[Sample], now: float, window_s: float) -> list[Sample]:
    """The samples that finished in the ``window_s`` seconds before ``now`` (samples are in time order)."""
    recent = []
    for sample in reversed(samples):
        if sample.at <= now - window_s:
            break
        if sample.at <= now:
            recent.append(sample)
    return recent


def load_digits(source: str) -> tuple[np.ndarray, np.ndarray]:
    """Real MNIST test digits (uint8, N x 28 x 28) and their labels."""
    if source == "examples":
        from serve_app.training.examples import load_examples

        return load_examples()
    if source == "mnist":
        from serve_app.training.data import load_split

        split = load_split("test")
        return split.images, split.labels
    raise ValueError(f"--digits is examples or mnist, got {source!r}")


def prediction_problem(body: Any, expected_images: int, model_id: str | None = None) -> str | None:
    """Why a /predict answer is not a valid prediction of ``expected_images`` digits; None if it is."""
    if not isinstance(body, dict):
        return f"the answer is not a JSON object: {body!r:.200}"
    labels, probabilities = body.get("predicted_label"), body.get("probabilities")
    if not isinstance(labels, list) or len(labels) != expected_images:
        return f"predicted_label is not a list of {expected_images} labels: {labels!r:.200}"
    if any(not isinstance(label, int) or not 0 <= label <= 9 for label in labels):
        return f"a label is not a digit 0-9: {labels!r:.200}"
    if not isinstance(probabilities, list) or len(probabilities) != expected_images:
        return "probabilities do not have one row per image"
    for row in probabilities:
        if not isinstance(row, list) or len(row) != 10 or abs(sum(row) - 1) > 1e-3:
            return f"a probability row is not 10 numbers summing to 1: {row!r:.200}"
    if model_id is not None and body.get("model_id") != model_id:
        return f"answered by model {body.get('model_id')!r}, asked for {model_id!r}"
    return None


@dataclass
class ScenarioRun:
    """A scenario's shared machinery (see the module's documentation)."""

    scenario: str
    thresholds: Sequence[Threshold]
    options: Sequence[Option] = ()
    #: scenario-specific checks, after the common ones: (run) -> checks
    extra_checks: Callable[[ScenarioRun], list[Check]] | None = None
    #: scenario-specific figures for the verdict JSON: (run) -> dict
    extra_report: Callable[[ScenarioRun], dict[str, Any]] | None = None
    environment: Environment | None = None
    samples: list[Sample] = field(default_factory=list)
    timeline: list[TimelineRow] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)  # (Unix time, label) marks on the plot
    started_at: float | None = None
    snapshot_listeners: list[Callable[[Snapshot], None]] = field(default_factory=list)
    digits: tuple[np.ndarray, np.ndarray] | None = None
    _poller: gevent.Greenlet | None = None

    def __post_init__(self) -> None:
        events.init_command_line_parser.add_listener(self._add_arguments)
        events.init.add_listener(self._on_init)
        events.test_start.add_listener(self._on_test_start)
        events.request.add_listener(self._on_request)
        events.quitting.add_listener(self._on_quitting)

    # --- options ---

    def _add_arguments(self, parser: Any) -> None:
        group = parser.add_argument_group(f"mnist-serve {self.scenario} scenario")
        _add(group, "dashboard-url", DEFAULT_DASHBOARD_URL, "Ray dashboard, for Serve's replica counts")
        _add(group, "dashboard-token", "", "Ray auth token (default: $RAY_AUTH_TOKEN or ~/.ray/auth_token)")
        _add(group, "app-name", APP_NAME, "the Serve application to watch")
        _add(group, "poll-interval", 1.0, "seconds between dashboard polls", type=float)
        _add(group, "request-timeout", 30.0, "client timeout of each request, seconds", type=float)
        _add(group, "digits", "examples", "real digits to send: examples (10 shipped) or mnist (test split)")
        for option in self.options:
            _add(group, option.name, option.default, option.help, type=option.type, choices=option.choices)
        for threshold in self.thresholds:
            _add(group, threshold.name, threshold.default, f"verdict: {threshold.help}", type=float)

    def option(self, name: str) -> Any:
        """A parsed option by its command-line name (``"max-fail-ratio"``)."""
        return getattr(self.environment.parsed_options, name.replace("-", "_"))

    def _on_init(self, environment: Environment, **_: Any) -> None:
        self.environment = environment
        if environment.parsed_options is not None:
            self.digits = load_digits(self.option("digits"))

    @property
    def dashboard(self) -> DashboardClient:
        """A client of the dashboard the options name."""
        token = self.option("dashboard-token") or read_auth_token()
        return DashboardClient(self.option("dashboard-url"), token=token, timeout_s=5)

    # --- recording ---

    def _on_test_start(self, environment: Environment, **_: Any) -> None:
        self.environment = environment
        self.samples.clear()
        self.timeline.clear()
        self.snapshots.clear()
        self.events.clear()
        self.started_at = time.time()
        if self._poller is None or self._poller.dead:
            self._poller = gevent.spawn(self._poll_forever)

    def _on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        exception: BaseException | None = None,
        response: Any = None,
        **_: Any,
    ) -> None:
        status = int(getattr(response, "status_code", 0) or 0)
        timed_out = exception is not None and "timeout" in type(exception).__name__.lower()
        self.samples.append(Sample(time.time(), exception is None, float(response_time or 0), status, name, timed_out))

    def snapshot(self) -> Snapshot:
        """Serve's state now (an unreachable snapshot when the dashboard does not answer)."""
        now = time.time()
        try:
            return snapshot_from_status(self.dashboard.status(), self.option("app-name"), now)
        except Exception as error:  # noqa: BLE001 - a dashboard outage is data, not a crash
            logger.debug("dashboard did not answer: %s", error)
            return unreachable(now)

    def _poll_forever(self) -> None:
        while True:
            snapshot = self.snapshot()
            self.snapshots.append(snapshot)
            self.timeline.append(self._row(snapshot))
            for listener in self.snapshot_listeners:
                listener(snapshot)
            gevent.sleep(self.option("poll-interval"))

    def _row(self, snapshot: Snapshot) -> TimelineRow:
        runner = self.environment.runner
        recent = recent_samples(self.samples, snapshot.at, RATE_WINDOW_S)
        latencies = [sample.ms for sample in recent if sample.ok]
        return TimelineRow(
            elapsed_s=snapshot.at - (self.started_at or snapshot.at),
            users=runner.user_count if runner is not None else 0,
            rps=len(recent) / RATE_WINDOW_S,
            fails_per_s=sum(not sample.ok for sample in recent) / RATE_WINDOW_S,
            p50_ms=percentile(latencies, 50),
            p99_ms=percentile(latencies, 99),
            replicas=dict(snapshot.running) if snapshot.reachable else None,
        )

    def mark(self, label: str, at: float | None = None) -> None:
        """A labelled vertical line on the plot (a fault, the start of a spike)."""
        self.events.append((time.time() if at is None else at, label))

    # --- verdict and reports ---

    def common_checks(self) -> list[Check]:
        """Failure ratio, p95 and p99 over every request, when the scenario has those thresholds."""
        total = self.environment.stats.total
        observed = {
            "max-fail-ratio": (total.fail_ratio if total.num_requests else None, "failure ratio", ""),
            "max-p95-ms": (total.get_response_time_percentile(0.95) if total.num_requests else None, "p95", " ms"),
            "max-p99-ms": (total.get_response_time_percentile(0.99) if total.num_requests else None, "p99", " ms"),
        }
        checks = []
        for threshold in self.thresholds:
            if threshold.name in observed:
                value, label, unit = observed[threshold.name]
                checks.append(Check(label, value, self.option(threshold.name), "<=", unit))
        if not total.num_requests:
            checks.append(Check("requests sent", 0, 1, ">=", note="the run sent no request"))
        return checks

    def checks(self) -> list[Check]:
        """Every check of the verdict."""
        return self.common_checks() + (self.extra_checks(self) if self.extra_checks else [])

    def prefix(self) -> Path:
        """Where this run's reports go (the ``--csv`` prefix, else loadtests/results/...)."""
        csv_prefix = self.environment.parsed_options.csv_prefix
        if csv_prefix:
            return Path(csv_prefix)
        return RESULTS_DIR / f"{self.scenario}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"

    def _on_quitting(self, environment: Environment, **_: Any) -> None:
        self.environment = environment
        if self._poller is not None:
            self._poller.kill(block=False)
        checks = self.checks()
        passed = verdict_passed(checks)
        print(format_checks(self.scenario, checks), flush=True)
        try:
            self.write_reports(checks, passed)
        except Exception:  # a report that cannot be written must not hide the verdict
            logger.exception("could not write the reports")
        environment.process_exit_code = 0 if passed else 1

    def write_reports(self, checks: Sequence[Check], passed: bool) -> None:
        """The verdict JSON, the timeline CSV and plot, and Locust's CSVs when ``--csv`` is unset."""
        prefix = self.prefix()
        if not self.environment.parsed_options.csv_prefix:
            self._write_locust_csvs(prefix)
        origin = self.started_at or time.time()
        document = {
            "scenario": self.scenario,
            "verdict": "pass" if passed else "fail",
            "checks": [check.as_dict() for check in checks],
            "requests": self.environment.stats.total.num_requests,
            "failures": self.environment.stats.total.num_failures,
            "host": self.environment.host,
            "started_at": origin,
            **(self.extra_report(self) if self.extra_report else {}),
        }
        write_json(document, Path(f"{prefix}_verdict.json"))
        write_timeline_csv(self.timeline, Path(f"{prefix}_timeline.csv"))
        title = f"{self.scenario}: {'PASS' if passed else 'FAIL'} ({self.environment.host})"
        marks = [(at - origin, label) for at, label in self.events]
        plot_timeline(self.timeline, Path(f"{prefix}.png"), title, marks)
        print(f"reports: {prefix}_stats.csv, {prefix}_timeline.csv, {prefix}_verdict.json, {prefix}.png", flush=True)

    def _write_locust_csvs(self, prefix: Path) -> None:
        writer = StatsCSV(self.environment, PERCENTILES_TO_REPORT)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        for suffix, write in (
            ("stats", writer.requests_csv),
            ("failures", writer.failures_csv),
            ("exceptions", writer.exceptions_csv),
        ):
            with open(f"{prefix}_{suffix}.csv", "w", newline="") as handle:
                write(csv.writer(handle))


def post_digits(
    user: Any,
    run: ScenarioRun,
    count: int = 1,
    model_id: str | None = None,
    invert: bool = False,
    path: str = "/predict",
) -> bool:
    """POST ``count`` random real digits to ``path``; the answer must be a valid prediction.

    ``model_id`` goes in the ``serve_multiplexed_model_id`` header (and must be the model that
    answers); ``invert`` sends black-on-white digits (for the inverted model). An overload
    answer (503/429) is a failure named after its status, so the stats tell it apart.
    """
    images, _ = run.digits
    chosen = images[user.rng.integers(0, len(images), size=count)]
    if invert:
        chosen = 255 - chosen
    headers = {"serve_multiplexed_model_id": model_id} if model_id else {}
    with user.client.post(
        path,
        json={"image": chosen.tolist()},
        headers=headers,
        name=path if model_id is None else f"{path} [{model_id}]",
        timeout=run.option("request-timeout"),
        catch_response=True,
    ) as response:
        if response.status_code in OVERLOAD_STATUSES:
            response.failure(f"overloaded: {response.status_code}")
            return False
        if response.status_code != 200:
            response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            return False
        try:
            problem = prediction_problem(response.json(), count, model_id)
        except ValueError:
            problem = f"the answer is not JSON: {response.text[:200]}"
        if problem:
            response.failure(problem)
            return False
        response.success()
        return True


class DigitsUser(HttpUser):
    """Base of the scenarios' users: requests back to back, a random generator of its own.

    Abstract: a scenario subclasses it and adds its ``@task``.
    """

    abstract = True
    wait_time = staticmethod(lambda: 0)

    def on_start(self) -> None:
        """A random generator per user (which digits, which model)."""
        self.rng = np.random.default_rng()
