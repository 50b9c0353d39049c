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
import time
from pathlib import Path

import pytest
import requests

from serve_app.config import APP_NAME, REPO_ROOT

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


# --- fault injection: the local injector kills what it says it kills ---------------------------------


def classifier_pids(local_serve) -> dict[str, int]:
    app = local_serve.dashboard.status()["applications"][APP_NAME]
    replicas = app["deployments"]["Classifier"]["replicas"]
    return {r["replica_id"]: r["pid"] for r in replicas if r["state"] == "RUNNING"}


def wait_until_serving(local_serve, timeout_s: float = 120) -> None:
    """The app RUNNING and answering again after a fault."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if (
                local_serve.dashboard.application_statuses().get(APP_NAME) == "RUNNING"
                and requests.get(local_serve.base_url + "/healthz", timeout=5).status_code == 200
            ):
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise AssertionError("the app did not come back after the fault")


def run_fault(local_serve, tmp_path, target: str) -> tuple[int, str, dict]:
    code, output, verdict = run_locust(
        "fault_injection",
        local_serve,
        tmp_path / target,
        *("-u", "2", "-r", "2", "-t", "40s", "--fault-target", target, "--fault-start", "3"),
        *("--fault-interval", "35", "--max-recovery-s", "35", "--max-fail-ratio", "0.05", "--seed", "1"),
    )
    wait_until_serving(local_serve)
    return code, output, verdict


def test_killing_a_classifier_replica_replaces_its_process(local_serve, tmp_path):
    before = classifier_pids(local_serve)
    code, output, verdict = run_fault(local_serve, tmp_path, "classifier-replica")
    assert code == 0, output[-3000:]
    (fault,) = verdict["faults"]
    killed_id = next(replica_id for replica_id in before if replica_id in fault["victim"])
    assert str(before[killed_id]) in fault["victim"]
    assert fault["recovery_s"] is not None and fault["recovery_s"] > 0
    after = classifier_pids(local_serve)
    assert killed_id not in after and before[killed_id] not in after.values()
    assert len(after) == len(before)
    assert_reports(tmp_path / "classifier-replica")


def test_killing_the_controller_restarts_it(local_serve, tmp_path):
    controller_id = local_serve.dashboard.status()["controller_info"]["actor_id"]
    pid_before = local_serve.dashboard.actor(controller_id)["pid"]
    code, output, verdict = run_fault(local_serve, tmp_path, "controller")
    assert code == 0, output[-3000:]
    (fault,) = verdict["faults"]
    assert f"pid {pid_before}" in fault["victim"] and fault["recovery_s"] is not None
    actor = local_serve.dashboard.actor(controller_id)  # Ray restarts the same (detached) actor
    assert actor["state"] == "ALIVE" and actor["pid"] != pid_before
    assert int(actor["num_restarts"]) >= 1
