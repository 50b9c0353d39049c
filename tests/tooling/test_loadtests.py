"""The pure parts of the load tests: verdicts, fault windows, recovery, shapes, Serve status, pod choice."""

import math

import pytest
from _faults import eligible_pods, is_ready, matches, pod_selector, selector_string
from _report import TimelineRow, plot_timeline, write_timeline_csv
from _serve_status import Snapshot, at_full_strength, snapshot_from_status, unreachable
from _shapes import ramp_users, spike_phase
from _verdict import Check, fault_windows, format_checks, percentile, recovery_after, verdict_passed, zipf_weights

# --- checks -------------------------------------------------------------------------------------


def test_checks_compare_both_ways():
    assert Check("p99", 90.0, 100.0).passed
    assert not Check("p99", 110.0, 100.0).passed
    assert Check("replicas", 3, 2, ">=").passed
    assert not Check("replicas", 1, 2, ">=").passed
    assert Check("nothing to measure", None, 1.0).passed
    assert not Check("never recovered", math.inf, 30.0).passed
    assert not Check("nan", float("nan"), 30.0).passed


def test_verdict_fails_when_one_check_fails():
    checks = [Check("a", 1, 2), Check("b", 3, 2)]
    assert not verdict_passed(checks)
    assert verdict_passed(checks[:1])
    table = format_checks("steady", checks)
    assert table.splitlines()[0] == "verdict of steady: FAIL"
    assert "FAIL b: 3 <= 2" in table


# --- failures around faults, recovery -------------------------------------------------------------


def test_fault_windows_split_failures_during_and_after():
    samples = [(t, not 10 <= t < 13) for t in range(0, 40)]  # failures at 10, 11, 12
    windows = fault_windows(samples, fault_times=[9.5, 25.0], recovered_times=[14.0, None], end=40.0)
    first, second = windows
    assert (first.failures_during, first.requests_during) == (3, 4)  # 10, 11, 12, 13
    assert (first.failures_after, first.requests_after) == (0, 11)  # 14..24
    assert (second.failures_during, second.requests_during) == (0, 15)  # unrecovered: to the end
    assert second.requests_after == 0


def test_fault_windows_need_one_recovery_per_fault():
    with pytest.raises(ValueError, match="one recovery"):
        fault_windows([], [1.0], [], 2.0)


def test_recovery_after_waits_for_a_whole_window_of_successes():
    samples = [(10.0, False), (10.5, True), (11.0, False), (12.0, True), (13.0, True), (14.5, True), (20.0, True)]
    assert recovery_after(samples, since=10.0, window_s=2.0) == pytest.approx(2.0)  # 12.0 .. 14.5
    assert recovery_after(samples, since=10.0, window_s=10.0) is None
    assert recovery_after([], since=0.0, window_s=1.0) is None
    with pytest.raises(ValueError):
        recovery_after(samples, since=0.0, window_s=0)


def test_percentile_is_nearest_rank():
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([5.0, 1.0], 95) == 5.0
    assert percentile([], 95) is None


def test_zipf_weights_favour_the_first_ranks_and_sum_to_one():
    weights = zipf_weights(3, 1.0)
    assert sum(weights) == pytest.approx(1.0)
    assert weights[0] / weights[1] == pytest.approx(2.0)
    assert zipf_weights(4, 0) == [0.25] * 4
    with pytest.raises(ValueError):
        zipf_weights(0, 1.0)


# --- shapes ---------------------------------------------------------------------------------------------


def test_ramp_users_rise_hold_fall_and_end():
    users = [ramp_users(t, peak=32, ramp_s=10, hold_s=5, tail_s=5) for t in range(0, 31)]
    assert users[0] == 1 and users[10] == 32 and users[14] == 32
    assert users[:11] == sorted(users[:11]) and users[15:26] == sorted(users[15:26], reverse=True)
    assert users[25] == 1 and users[29] == 1 and users[30] is None
    assert ramp_users(27, peak=32, ramp_s=10, hold_s=5, tail_s=5, tail_users=0) == 0


def test_spike_phases():
    assert [spike_phase(t, 5, 10, 5) for t in (0, 5, 14.9, 15, 19.9, 20)] == [
        "baseline",
        "spike",
        "spike",
        "recover",
        "recover",
        None,
    ]


# --- Serve status -------------------------------------------------------------------------------------


def status_document(classifier_running: int = 2, target: int = 2, proxy: str = "HEALTHY") -> dict:
    replicas = [
        {"replica_id": f"c{i}", "state": "RUNNING", "pid": 100 + i, "node_ip": "10.0.0.1"}
        for i in range(classifier_running)
    ] + [{"replica_id": "starting", "state": "STARTING", "pid": None}]
    return {
        "controller_info": {"actor_id": "ctrl"},
        "proxies": {"node-1": {"actor_name": "SERVE_PROXY_ACTOR-node-1", "status": proxy}},
        "applications": {
            "mnist": {
                "status": "RUNNING",
                "deployments": {
                    "Classifier": {"target_num_replicas": target, "replicas": replicas},
                    "Ingress": {"target_num_replicas": 1, "replicas": [{"replica_id": "i0", "state": "RUNNING"}]},
                },
            }
        },
    }


def test_snapshot_counts_running_replicas_only():
    snapshot = snapshot_from_status(status_document(), "mnist", at=5.0)
    assert snapshot.running == {"Classifier": 2, "Ingress": 1}
    assert snapshot.targets == {"Classifier": 2, "Ingress": 1}
    assert snapshot.replica_ids == {"c0", "c1", "i0"}
    assert snapshot.controller_actor_id == "ctrl"
    assert at_full_strength(snapshot)


@pytest.mark.parametrize(
    "snapshot",
    [
        snapshot_from_status(status_document(classifier_running=1), "mnist", 0.0),  # a replica short
        snapshot_from_status(status_document(proxy="UNHEALTHY"), "mnist", 0.0),
        snapshot_from_status(status_document(), "another-app", 0.0),  # nothing of the app
        unreachable(0.0),
    ],
)
def test_not_at_full_strength(snapshot: Snapshot):
    assert not at_full_strength(snapshot)


# --- pod choice ---------------------------------------------------------------------------------------


def pod(name: str, labels: dict, phase: str = "Running", ready: bool = True, deleting: bool = False) -> dict:
    metadata = {"name": name, "uid": f"uid-{name}", "labels": labels}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": metadata,
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}]},
    }


def test_pod_selector_and_its_string():
    selector = pod_selector("mnist-serve", "worker", "gpu")
    assert selector_string(selector) == (
        "app.kubernetes.io/instance=mnist-serve,ray.io/group=gpu,ray.io/node-type=worker"
    )
    with pytest.raises(ValueError):
        pod_selector("mnist-serve", "redis")


def test_eligible_pods_skip_other_releases_pending_and_deleting_pods():
    worker = {"app.kubernetes.io/instance": "mnist-serve", "ray.io/node-type": "worker"}
    pods = [
        pod("w-b", worker),
        pod("w-a", worker, ready=False),
        pod("w-pending", worker, phase="Pending"),
        pod("w-going", worker, deleting=True),
        pod("other", {**worker, "app.kubernetes.io/instance": "other"}),
        pod("head", {**worker, "ray.io/node-type": "head"}),
    ]
    selector = pod_selector("mnist-serve", "worker")
    assert [p["metadata"]["name"] for p in eligible_pods(pods, selector)] == ["w-a", "w-b"]
    assert [p["metadata"]["name"] for p in eligible_pods(pods, selector, ready_only=True)] == ["w-b"]
    assert not is_ready(pod("x", worker, phase="Pending"))
    assert not matches(None, selector)


# --- reports --------------------------------------------------------------------------------------------


def test_timeline_csv_and_plot(tmp_path):
    rows = [
        TimelineRow(0.0, 1, 0.0, 0.0, None, None, {"Classifier": 0}),
        TimelineRow(1.0, 4, 30.5, 0.0, 80, 200, {"Classifier": 1, "Ingress": 1}),
        TimelineRow(2.0, 4, 31.0, 1.0, 85, 210, None),
    ]
    csv_path = write_timeline_csv(rows, tmp_path / "run_timeline.csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "elapsed_s,users,rps,fails_per_s,p50_ms,p99_ms,replicas_Classifier,replicas_Ingress"
    assert lines[1] == "0.0,1,0.00,0.00,,,0,0"
    assert lines[3] == "2.0,4,31.00,1.00,85,210,,"  # the dashboard did not answer
    png = plot_timeline(rows, tmp_path / "run.png", "test", events=[(1.5, "fault 1")])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
