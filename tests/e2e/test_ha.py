"""GCS fault tolerance on a real cluster: the ha scenario keeps serving while the head is replaced.

The chart's ha scenario (GCS state in the chart's Redis, the head out of the serve Service)
on its own release and namespace: install, Ready, the head pod deleted during a Locust
fault-injection run with no failed request, ``helm uninstall`` leaving nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kube import Kube, Settings, gcs_fault_tolerant, head_serves, wait_until
from tests.support.release import Release, classify_examples, install_release, run_fault_injection

pytestmark = pytest.mark.timeout(3600)


@pytest.fixture(scope="module")
def release(kube: Kube, settings: Settings, gpus: bool) -> Iterator[Release]:
    """The chart installed with its ha scenario."""
    yield from install_release(kube, settings, gpus, ha=True, label="ha")


def test_ha_install_reaches_ready(ready: Release) -> None:
    assert gcs_fault_tolerant(ready.rayservice)
    assert not head_serves(ready.rayservice)
    with ready.serve_forward("worker") as serve:
        classify_examples(serve.url)


def test_head_pod_deletion_with_gcs_fault_tolerance_fails_no_request(
    ready: Release, record_property: pytest.RecordProperty
) -> None:
    # The forward stays on a serving worker, which must keep answering while the head is replaced.
    with ready.serve_forward("worker") as serve:
        run = run_fault_injection(ready, "head-pod", ready.settings.fault_run_s, serve, "head-pod-with-gcs-ft")
    record_property("fault_report", run.report.summary())
    assert run.report.faults, f"the head pod was not deleted; see {run.directory}/locust.log"
    assert run.report.recovered, f"the head was not replaced within the run: {run.report.summary()}"
    assert run.report.failures == 0, f"requests failed while the head was replaced: {run.report.summary()}"


def test_ha_helm_uninstall_leaves_nothing_behind(release: Release) -> None:
    release.uninstall()
    left = wait_until(lambda: (not release.leftovers(), str(release.leftovers())), 300, "nothing left after uninstall")
    assert left
