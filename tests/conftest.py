"""Shared test configuration: markers by directory, real data and example fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from serve_app.training.data import MnistSplit, load_split
from serve_app.training.examples import load_examples

TESTS_DIR = Path(__file__).resolve().parent
# The load tests' helper modules import each other as Locust loads them: from their own directory.
# Only the pure ones (no ``locust`` import, which would monkey-patch this process) are imported here.
sys.path.insert(0, str(TESTS_DIR.parent / "loadtests"))
_MARKER_BY_DIR = {
    "unit": "unit",
    "tooling": "tooling",
    "integration": "integration",
    "chart": "chart",
    "e2e": "e2e",
    "cluster": "multinode",
    "kube": "kube",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every test the marker of its directory (tests/unit -> unit, ...)."""
    for item in items:
        relative = Path(str(item.fspath)).resolve().relative_to(TESTS_DIR)
        marker = _MARKER_BY_DIR.get(relative.parts[0])
        if marker:
            item.add_marker(marker)


@pytest.fixture(scope="session")
def mnist_test() -> MnistSplit:
    """The real MNIST test split (fetched and verified on first use)."""
    return load_split("test")


@pytest.fixture(scope="session")
def example_digits() -> tuple[np.ndarray, np.ndarray]:
    """The ten shipped real digits (uint8 (10, 28, 28)) and their labels."""
    return load_examples()
