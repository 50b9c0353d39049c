"""Render the chart with the real Helm engine (helm-python-sdk, Helm v4), offline."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tools.chart import (
    CHART_DIR,
    CI_DIR,
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    Rendered,
    objects_of,
    render_chart,
    scenario_values,
)

__all__ = ["CHART_DIR", "CI_DIR", "NAMESPACE", "RELEASE", "SCENARIOS", "objects_of", "render_chart", "scenario_values"]


def merge_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Values documents coalesced as Helm does for ``-f a.yaml -f b.yaml``: later ones win, maps merge.

    Neither argument is changed. (A ``None`` is kept as a value here; Helm would drop the key.)
    """
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def rayservice_of(rendered: Rendered) -> dict[str, Any]:
    """The one RayService."""
    (rayservice,) = objects_of(rendered, "RayService")
    return rayservice


def serve_config_of(rendered: Rendered) -> dict[str, Any]:
    """The RayService's serveConfigV2, parsed."""
    return yaml.safe_load(rayservice_of(rendered)["spec"]["serveConfigV2"])


def pod_templates(rayservice: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod templates of the RayService's head group and of every worker group, head first."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"]] + [group["template"] for group in cluster.get("workerGroupSpecs", [])]


def ray_container_env(template: dict[str, Any]) -> dict[str, str]:
    """A pod template's Ray container's plain environment variables (KubeRay: the first container)."""
    return {item["name"]: item["value"] for item in template["spec"]["containers"][0].get("env", []) if "value" in item}


def notes_of(rendered: Rendered) -> str:
    """The rendered NOTES.txt."""
    return next(objects[0]["notes"] for path, objects in rendered.items() if path.endswith("NOTES.txt"))


@pytest.fixture(scope="session")
def render() -> Callable[..., Rendered]:
    """The render function, for tests that build their own values."""
    return render_chart


@pytest.fixture(scope="session", params=SCENARIOS)
def scenario(request: pytest.FixtureRequest) -> tuple[str, Rendered]:
    """(name, rendered objects) for every ci/ scenario."""
    return request.param, render_chart(scenario_values(request.param))
