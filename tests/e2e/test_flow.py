"""The user flow on a real cluster, in order, on one release in its own namespace.

The chart's default scenario on a cluster with allocatable GPUs, its cpu-only scenario
otherwise: install, Ready, real digits, ``helm test``, a serve-config-only ``helm upgrade``
under load with no failed request, a worker pod and then the head pod (no GCS fault tolerance)
deleted during Locust fault-injection runs, ``helm uninstall`` leaving nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from serve_app.config import APP_NAME
from serve_app.local.dashboard import DashboardClient
from tests.support.kube import (
    Kube,
    LoadLoop,
    Settings,
    active_cluster,
    deployment_user_config,
    gcs_fault_tolerant,
    head_serves,
    helm,
    upgrade_args,
    wait_until,
)
from tests.support.release import (
    Release,
    classify_examples,
    classify_examples_over_grpc,
    install_release,
    run_fault_injection,
)

pytestmark = pytest.mark.timeout(3600)


@pytest.fixture(scope="module")
def release(kube: Kube, settings: Settings, gpus: bool) -> Iterator[Release]:
    """The chart installed without HA."""
    yield from install_release(kube, settings, gpus, ha=False, label="flow")


def test_install_reaches_ready(ready: Release, record_property: pytest.RecordProperty) -> None:
    live = ready.live()
    assert active_cluster(live), live.get("status")
    assert not gcs_fault_tolerant(ready.rayservice)
    record_property("ready_after_s", round(ready.ready_after_s or 0, 1))


def test_port_forward_and_real_digits(ready: Release) -> None:
    with ready.serve_forward() as serve:
        classify_examples(serve.url)
        assert requests.get(f"{serve.url}/healthz", timeout=30).status_code == 200


def test_grpc_service_classifies_real_digits(ready: Release) -> None:
    with ready.grpc_forward() as forward:
        classify_examples_over_grpc(f"127.0.0.1:{forward.local_port}")


def test_helm_test_classifies_the_test_digit(ready: Release) -> None:
    output = helm("test", ready.name, "--namespace", ready.namespace, "--logs", "--timeout", "10m")
    assert "classified the test digit as [7]" in output, output[-2000:]
    assert "gRPC Predict classified the test digit as [7]" in output, output[-2000:]


def test_serve_config_only_upgrade_under_load_fails_no_request(ready: Release, digit_body: bytes) -> None:
    cluster_before, heads_before = active_cluster(ready.live()), ready.pod_uids("head")
    with ready.serve_forward() as serve, ready.dashboard_forward() as dashboard:
        client = DashboardClient(dashboard.url, token=ready.token() or None, timeout_s=10)
        before = deployment_user_config(client.status(), APP_NAME, "Classifier") or {}
        new_batch = 8 if before.get("max_batch_size") != 8 else 4
        with LoadLoop(serve.url, digit_body, [7], concurrency=4) as load:
            wait_until(lambda: (load.ok >= 20, f"{load.ok} answered, {len(load.failures)} failed"), 120, "warm-up")
            helm(*upgrade_args(ready.name, ready.namespace, {"serve.classifier.batching.maxBatchSize": new_batch}))

            def applied() -> tuple[bool, str]:
                live = deployment_user_config(client.status(), APP_NAME, "Classifier") or {}
                return live.get("max_batch_size") == new_batch, f"Classifier user_config {live}"

            wait_until(applied, 300, f"max_batch_size {new_batch} live in Serve", interval_s=3)
            ready.wait_ready(300)
            answered = load.ok
            wait_until(lambda: (load.ok >= answered + 20, f"{load.ok} answered"), 120, "load after the upgrade")
    assert not load.failures, f"{len(load.failures)} of {load.requests} requests failed: {load.failures[:10]}"
    assert active_cluster(ready.live()) == cluster_before, "a serve-config-only change must not build a new RayCluster"
    assert ready.pod_uids("head") == heads_before, "the head pod must not be replaced"


def test_worker_pod_deletion_under_fault_injection(ready: Release, record_property: pytest.RecordProperty) -> None:
    # The forward stays on the head (which serves here), so only the service's own recovery is measured.
    prefer = "head" if head_serves(ready.rayservice) else "service"
    with ready.serve_forward(prefer) as serve:
        run = run_fault_injection(ready, "worker-pod", ready.settings.fault_run_s, serve, "worker-pod")
    record_property("fault_report", run.report.summary())
    assert run.report.faults, f"no worker pod was deleted; see {run.directory}/locust.log"
    assert run.report.recovered, f"the service did not recover within the run: {run.report.summary()}"
    ready.wait_ready(600)
    with ready.serve_forward() as serve:
        classify_examples(serve.url)


def test_head_pod_deletion_without_gcs_fault_tolerance(ready: Release, record_property: pytest.RecordProperty) -> None:
    # Without GCS fault tolerance the whole application goes down with the head until the
    # operator has resubmitted it: failures are expected and recorded, recovery is required.
    run_time_s = max(2 * ready.settings.fault_run_s, 240)
    with ready.serve_forward() as serve:
        run = run_fault_injection(ready, "head-pod", run_time_s, serve, "head-pod-without-gcs-ft")
    record_property("fault_report", run.report.summary())
    assert run.report.faults, f"the head pod was not deleted; see {run.directory}/locust.log"
    assert run.report.recovered, f"the service did not recover within {run_time_s} s: {run.report.summary()}"
    ready.wait_ready(900)
    with ready.serve_forward() as serve:
        classify_examples(serve.url)


def test_helm_uninstall_leaves_nothing_behind(release: Release) -> None:
    release.uninstall()
    left = wait_until(lambda: (not release.leftovers(), str(release.leftovers())), 300, "nothing left after uninstall")
    assert left
