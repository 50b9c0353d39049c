"""Every Locust scenario, run headless for a few seconds against the local app: exit code and reports.

The scenarios run as users run them (``python -m locust -f loadtests/<scenario>.py``), in a
subprocess: Locust monkey-patches the process it runs in, which must not be this one.
Thresholds on latency are loosened here (a shared 2-core machine); the verdict logic itself is
checked both ways: a run that meets its thresholds exits 0, one that cannot exits 1.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from serve_app.config import REPO_ROOT

pytestmark = pytest.mark.load

LOADTESTS = REPO_ROOT / "loadtests"
LOOSE_LATENCY = ["--max-p95-ms", "60000", "--max-p99-ms", "60000"]

SCENARIOS = {
    "steady": ["-u", "2", "-r", "2", "-t", "6s", *LOOSE_LATENCY],
    "autoscaling": [
        # the session's Classifier is pinned to one replica: no scale-up to require here
        *("--peak-users", "4", "--ramp-s", "2", "--hold-s", "2", "--tail-s", "1", "--min-peak-replicas", "1"),
        *("--max-p99-ms", "60000"),
    ],
    "spike": [
        *("--baseline-users", "1", "--spike-users", "60", "--baseline-s", "2", "--spike-s", "3", "--recover-s", "10"),
        *("--recovery-window-s", "1", "--max-recovery-s", "9", "--min-fast-reject-share", "0"),
    ],
    "multiplex": ["-u", "2", "-r", "2", "-t", "6s", "--unknown-share", "0.1", *LOOSE_LATENCY],
    "async_inference": ["-u", "2", "-r", "2", "-t", "6s", "--max-e2e-p95-ms", "60000"],
}


def run_locust(
    scenario: str, local_serve, prefix: Path, *args: str, timeout_s: float = 180, env: dict | None = None
) -> tuple[int, str, dict]:
    """Run one scenario headless; its exit code, output and verdict JSON."""
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOADTESTS / f"{scenario}.py"),
        "--host",
        local_serve.base_url,
        "--headless",
        "--only-summary",
        "--csv",
        str(prefix),
        "--dashboard-url",
        local_serve.dashboard.url,
        "--poll-interval",
        "0.5",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=prefix.parent, env=env)
    output = done.stdout + done.stderr
    verdict_path = Path(f"{prefix}_verdict.json")
    verdict = json.loads(verdict_path.read_text()) if verdict_path.exists() else {}
    return done.returncode, output, verdict


def assert_reports(prefix: Path) -> None:
    """Locust's CSV stats, the timeline (with replica columns), the plot."""
    assert Path(f"{prefix}_stats.csv").read_text().startswith("Type,Name,Request Count")
    timeline = Path(f"{prefix}_timeline.csv").read_text().splitlines()
    assert "replicas_Classifier" in timeline[0] and len(timeline) >= 3, timeline
    assert Path(f"{prefix}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_runs_headless_and_reports(local_serve, tmp_path, scenario):
    prefix = tmp_path / scenario
    code, output, verdict = run_locust(scenario, local_serve, prefix, *SCENARIOS[scenario])
    assert code == 0, output[-3000:]
    assert verdict["verdict"] == "pass" and verdict["requests"] > 0, verdict
    assert_reports(prefix)


def test_an_unreachable_threshold_fails_the_run(local_serve, tmp_path):
    prefix = tmp_path / "steady"
    code, output, verdict = run_locust("steady", local_serve, prefix, "-u", "1", "-t", "4s", "--max-p99-ms", "0.001")
    assert code == 1, output[-3000:]
    assert verdict["verdict"] == "fail"
    assert [c["name"] for c in verdict["checks"] if not c["passed"]] == ["p99"]
    assert "verdict of steady: FAIL" in output


def test_thresholds_come_from_the_environment_too(local_serve, tmp_path):
    environment = {**os.environ, "LOCUST_MAX_FAIL_RATIO": "0.25"}
    code, output, verdict = run_locust(
        "steady", local_serve, tmp_path / "steady", "-u", "1", "-t", "3s", *LOOSE_LATENCY, env=environment
    )
    assert code == 0, output[-3000:]
    ratio = next(check for check in verdict["checks"] if check["name"] == "failure ratio")
    assert ratio["limit"] == 0.25  # the scenario's default is 0.001
