"""Self-healing: the local fault injector kills what it says it kills, and Serve replaces it.

Runs ``loadtests/fault_injection.py`` against the session's app with one fault. These tests kill
the Classifier replica and the Serve controller of the shared local Ray, so this module sorts
last among the integration tests: nothing after it sees a replaced replica's fresh counters.
"""

import time

import pytest
import requests

from serve_app.config import APP_NAME
from tests.integration.test_loadtests import assert_reports, run_locust

pytestmark = pytest.mark.load


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
