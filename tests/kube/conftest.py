"""The local control plane for tests/kube: one per module run, stopped and removed after."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.kube_local.cluster import LocalCluster, built_binaries


def unavailable_reason() -> str | None:
    """Why the real control plane cannot run here (None when it can)."""
    if built_binaries() is None:
        return "the control plane's binaries are not built: run bash scripts/kube-build (bash scripts/test does)"
    return None


REASON = unavailable_reason()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[LocalCluster]:
    """etcd, kube-apiserver, controller-manager, scheduler and the kwok nodes; the operator not yet."""
    if REASON is not None:
        pytest.skip(REASON)
    cluster = LocalCluster(state=Path(tempfile.mkdtemp(prefix="mnist-serve-kube-", dir="/var/tmp")))
    try:
        cluster.up(with_operator=False)
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def operator(control_plane: LocalCluster) -> LocalCluster:
    """The same cluster with the KubeRay CRDs and the operator running."""
    if "kuberay-operator" not in control_plane.running():
        control_plane.install_operator()
    return control_plane
