"""Render the chart with the real Helm engine (helm-python-sdk, Helm v4), offline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from serve_app.config import REPO_ROOT

CHART_DIR = REPO_ROOT / "charts" / "mnist-serve"
CI_DIR = CHART_DIR / "ci"
SCENARIOS = sorted(path.stem.removesuffix("-values") for path in CI_DIR.glob("*-values.yaml"))
RELEASE = "mnist-serve"
NAMESPACE = "serving"

Rendered = dict[str, list[dict[str, Any]]]


def scenario_values(scenario: str) -> dict[str, Any]:
    """The values file of one ci/ scenario."""
    return yaml.safe_load((CI_DIR / f"{scenario}-values.yaml").read_text()) or {}


def render_chart(
    values: dict[str, Any] | None = None, name: str = RELEASE, namespace: str = NAMESPACE, chart_dir: Path = CHART_DIR
) -> Rendered:
    """Render the chart; return template path -> parsed objects (empty documents dropped)."""
    with helm.Chart.load(str(chart_dir)) as chart:
        manifests = chart.render(values or {}, name=name, namespace=namespace, is_install=True)
    rendered: Rendered = {}
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            rendered[path] = [{"notes": text}]
            continue
        objects = [doc for doc in yaml.safe_load_all(text) if doc]
        if objects:
            rendered[path] = objects
    return rendered


def objects_of(rendered: Rendered, kind: str | None = None) -> list[dict[str, Any]]:
    """Every rendered Kubernetes object (optionally of one kind), NOTES excluded."""
    found = [obj for objects in rendered.values() for obj in objects if "kind" in obj]
    return [obj for obj in found if kind is None or obj["kind"] == kind]


def rayservice_of(rendered: Rendered) -> dict[str, Any]:
    """The one RayService."""
    (rayservice,) = objects_of(rendered, "RayService")
    return rayservice


def serve_config_of(rendered: Rendered) -> dict[str, Any]:
    """The RayService's serveConfigV2, parsed."""
    return yaml.safe_load(rayservice_of(rendered)["spec"]["serveConfigV2"])


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
