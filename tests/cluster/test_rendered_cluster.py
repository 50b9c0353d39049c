"""Layer 3b: the RayService that `helm template` renders, run as a real multi-node Ray cluster.

One Ray node per pod of the default, cpu-only and HA scenarios (tools/multinode: network, PID and
mount namespaces per pod, `ray start` flags as KubeRay 1.7.0 derives them, serveConfigV2 deployed
as the operator deploys it). Checked: every node advertises the resources the pod asks for; nothing
lands on the head; the Classifier lands on the GPU group and the rest on the CPU group; in HA each
request-path deployment spans two pods; real digits are classified through every worker's serve
port; and in HA a CPU worker, a GPU worker and the head are each killed under steady load.
A pod that fails to start is replaced as KubeRay replaces it, and the report (printed with -s, and
in a failing test's log) gives each failed start with its pod's last log line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tools.chart import objects_of, render_chart, scenario_values
from tools.multinode.faults import REQUEST_PATH
from tools.multinode.network import unavailable_reason
from tools.multinode.report import ScenarioReport, format_report, run_scenario

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"multi-node layer: {REASON}")

#: Where each deployment's replicas must land (the chart's worker groups).
GROUP_OF = {"Ingress": "cpu", "Preprocessor": "cpu", "TaskConsumer": "cpu", "Classifier": "gpu"}
#: Success ratio under a worker kill in HA, and the most seconds until Serve is whole again.
MIN_SUCCESS_RATIO = 0.999
MAX_RECOVERY_S = 120
#: What each extra start of the killed pod may add: Ray's 30 s start timeout, the 5 s before the
#: replacement starts, and margin. The report gives every start and why it failed.
REPLACEMENT_S = 60


def recovery_bound(report) -> float:
    """Seconds the fault may take to heal: the bound, plus one replacement per failed start of the pod."""
    return MAX_RECOVERY_S + REPLACEMENT_S * max(report.pod_starts - 1, 0)


#: Where each scenario's report is also written as JSON, when set (the figures of a CI run).
REPORT_DIR_ENV = "MNIST_SERVE_REPORT_DIR"


def report_of(scenario: str, faults: bool = False) -> ScenarioReport:
    report = run_scenario(scenario, objects_of(render_chart(scenario_values(scenario))), faults=faults)
    print(format_report(report))  # shown with -s, and in the log of a failing test
    if os.environ.get(REPORT_DIR_ENV):
        directory = Path(os.environ[REPORT_DIR_ENV])
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"multinode-{scenario}.json").write_text(json.dumps(report.as_dict(), indent=2))
        (directory / f"multinode-{scenario}.txt").write_text(format_report(report) + "\n")
    return report


@pytest.fixture(scope="module")
def default_run() -> ScenarioReport:
    return report_of("default")


@pytest.fixture(scope="module")
def cpu_only_run() -> ScenarioReport:
    return report_of("cpu-only")


@pytest.fixture(scope="module")
def ha_run() -> ScenarioReport:
    return report_of("ha", faults=True)


@pytest.fixture(params=["default", "cpu-only", "ha"])
def any_run(request: pytest.FixtureRequest) -> ScenarioReport:
    return request.getfixturevalue(
        {"default": "default_run", "cpu-only": "cpu_only_run", "ha": "ha_run"}[request.param]
    )


def test_every_node_advertises_what_its_pod_asks_kuberay_for(any_run):
    for name, pod in any_run.pods.items():
        params, advertised = pod["ray_start"], pod["ray_resources"]
        assert advertised.get("CPU", 0) == float(params.get("num-cpus", 0)), name
        assert advertised.get("GPU", 0) == float(params.get("num-gpus", 0)), name
        assert advertised["memory"] == float(params["memory"]), name
        if pod["group"] == "cpu":
            assert advertised["mnist_cpu_pool"] == 1000
    head = next(pod for pod in any_run.pods.values() if pod["group"] == "headgroup")
    assert "CPU" not in head["ray_resources"] and "GPU" not in head["ray_resources"]


def test_replicas_land_where_the_chart_intends(any_run):
    group_of_pod = {name: pod["group"] for name, pod in any_run.pods.items()}
    for deployment, pods in any_run.placement.items():
        assert {group_of_pod[pod] for pod in pods} <= {GROUP_OF[deployment]}, (deployment, pods)
    assert all(any_run.placement[name] for name in REQUEST_PATH)


def test_real_digits_are_classified_through_every_workers_serve_port(any_run):
    assert any_run.http_classified and all(any_run.http_classified.values()), any_run.http_answers
    assert any_run.grpc_classified is True


def test_the_default_gpu_limit_becomes_a_ray_gpu(default_run):
    gpu = [pod for pod in default_run.pods.values() if pod["group"] == "gpu"]
    assert gpu and all(pod["ray_resources"]["GPU"] == 1 for pod in gpu)


def test_the_cpu_only_scenario_runs_its_simulated_gpu_group(cpu_only_run):
    gpu = [pod for pod in cpu_only_run.pods.values() if pod["group"] == "gpu"]
    assert gpu and all(pod["ray_start"]["num-gpus"] == "1" for pod in gpu)
    assert cpu_only_run.placement["Classifier"]


def test_ha_spreads_every_request_path_deployment_over_two_worker_pods(ha_run):
    for deployment in REQUEST_PATH:
        assert len(ha_run.placement[deployment]) >= 2, (deployment, ha_run.placement[deployment])


@pytest.mark.parametrize("fault", ["CPU worker", "GPU worker"])
def test_ha_rides_out_a_worker_killed_under_load(ha_run, fault):
    (report,) = [f for f in ha_run.faults if f.fault == fault]
    assert report.requests > 100
    assert report.success_ratio >= MIN_SUCCESS_RATIO, report
    assert report.recovery_s <= recovery_bound(report), report


def test_ha_keeps_serving_with_zero_failures_while_the_head_is_replaced(ha_run):
    (report,) = [f for f in ha_run.faults if f.fault == "head"]
    assert report.requests > 100
    assert report.failures == 0, report.failure_samples
    # GCS fault tolerance: the restarted head recovers the applications from Redis by itself.
    assert report.resubmitted is False
    # From the kill to whole again, however many head starts it took (each failed one replaced).
    assert report.recovery_s <= recovery_bound(report), report.starts
    head_starts = [start for start in report.starts if start.pod == report.pod]
    assert head_starts[-1].joined and all(start.reason for start in head_starts[:-1]), head_starts
