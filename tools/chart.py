"""The chart rendered with the real Helm engine (helm-python-sdk, Helm v4), offline, as `helm template` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = REPO_ROOT / "charts" / "mnist-serve"
CI_DIR = CHART_DIR / "ci"
SCENARIOS = sorted(path.stem.removesuffix("-values") for path in CI_DIR.glob("*-values.yaml"))
RELEASE = "mnist-serve"
NAMESPACE = "serving"

#: Template path -> the objects it renders (NOTES.txt as ``[{"notes": text}]``).
Rendered = dict[str, list[dict[str, Any]]]


def scenario_values(scenario: str) -> dict[str, Any]:
    """The values file of one ci/ scenario."""
    return yaml.safe_load((CI_DIR / f"{scenario}-values.yaml").read_text()) or {}


def render_chart(
    values: dict[str, Any] | None = None, name: str = RELEASE, namespace: str = NAMESPACE, chart_dir: Path = CHART_DIR
) -> Rendered:
    """Render the chart as an install; return template path -> parsed objects (empty documents dropped)."""
    import helm_python as helm  # the test dependency group brings it

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
