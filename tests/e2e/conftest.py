"""The e2e suite's gate and shared fixtures.

Every e2e test needs the ``kube`` fixture, which skips (with the reason) when the current
kubeconfig context has no API server that answers within a few seconds, and also when one does
but the suite was not asked for: it installs and deletes releases there, so it runs only under
``bash scripts/e2e`` (``MNIST_SERVE_E2E=1``) or a ``-m`` expression that selects ``e2e``.
Once asked, a missing ``helm``/``kubectl`` or a cluster without the KubeRay operator is an error.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping

import pytest

from tests.support.kube import DIGITS_DIR, Kube, Settings, gpu_allocatable, probe_cluster
from tests.support.release import Release


def e2e_requested(markexpr: str, env: Mapping[str, str]) -> bool:
    """Whether the run asked for the e2e suite: MNIST_SERVE_E2E=1, or a ``-m`` expression selecting e2e."""
    if env.get("MNIST_SERVE_E2E") == "1":
        return True
    words = markexpr.replace("(", " ").replace(")", " ").split()
    return any(word == "e2e" and (index == 0 or words[index - 1] != "not") for index, word in enumerate(words))


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The MNIST_SERVE_E2E_* settings."""
    return Settings.from_env(os.environ)


@pytest.fixture(scope="session")
def kube(pytestconfig: pytest.Config, settings: Settings) -> Kube:
    """The cluster of the current kubeconfig context, or a skip that says why there is none."""
    found, description = probe_cluster(timeout_s=5)
    if found is None:
        pytest.skip(description)
    if not e2e_requested(pytestconfig.getoption("markexpr") or "", os.environ):
        pytest.skip(
            f"a cluster answers ({description}), but the e2e suite installs and deletes releases there: "
            "it runs only when asked (bash scripts/e2e, or pytest -m e2e)"
        )
    missing = [tool for tool in ("helm", "kubectl") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the e2e suite needs {' and '.join(missing)} on PATH (versions: cluster/versions.env)")
    if not found.has_crd("rayservices.ray.io"):
        pytest.fail(
            f"{description} has no RayService CRD: install the KubeRay operator first "
            "(bash scripts/kind-up does it, or the helm install of docs/kubernetes.md)"
        )
    print(f"\ne2e against {description}", file=sys.stderr)
    return found


@pytest.fixture(scope="session")
def gpus(kube: Kube, settings: Settings) -> bool:
    """Whether to install the GPU scenario: MNIST_SERVE_E2E_GPU, else allocatable nvidia.com/gpu."""
    return settings.gpu if settings.gpu is not None else gpu_allocatable(kube.nodes()) > 0


@pytest.fixture
def ready(release: Release) -> Release:
    """The module's release once its RayService is Ready (waited for again before each test)."""
    took = release.wait_ready()
    if release.ready_after_s is None:
        release.ready_after_s = took
    return release


@pytest.fixture
def digit_body() -> bytes:
    """A real MNIST test digit (a 7) as a /predict body."""
    return (DIGITS_DIR / "digit.json").read_bytes()
