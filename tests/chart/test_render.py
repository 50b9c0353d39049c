"""Layers 1 and 2: every ci/ scenario renders with the real Helm engine, passes lint, and every
object validates against the Kubernetes schemas and the KubeRay v1.7.0 RayService CRD."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from .conftest import CHART_DIR, SCENARIOS, objects_of, rayservice_of, scenario_values

KUBERNETES_VERSION = "1.32.0"
CRD_PATH = Path(__file__).parent / "crds" / "ray.io_rayservices.yaml"
#: Kinds whose schemas come from CRDs that kubernetes-validate does not ship.
CUSTOM_KINDS = {"RayService", "PodMonitor", "PrometheusRule"}


@functools.cache
def rayservice_schema() -> dict:
    """openAPIV3Schema of the v1 RayService from the copied KubeRay CRD."""
    crd = yaml.safe_load(CRD_PATH.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def test_there_are_the_documented_scenarios():
    assert set(SCENARIOS) == {"default", "cpu-only", "autoscaling", "monitoring", "ha"}


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_passes_helm_lint(name):
    report = helm.lint(str(CHART_DIR), scenario_values(name), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_every_scenario_renders_one_rayservice(scenario):
    _name, rendered = scenario
    rayservice = rayservice_of(rendered)
    assert rayservice["apiVersion"] == "ray.io/v1"
    assert rayservice["metadata"]["name"] == "mnist-serve"


def test_builtin_objects_validate_against_kubernetes_schemas(scenario):
    _, rendered = scenario
    builtin = [obj for obj in objects_of(rendered) if obj["kind"] not in CUSTOM_KINDS]
    assert builtin
    for obj in builtin:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_rayservice_validates_against_the_kuberay_crd(scenario):
    _, rendered = scenario
    jsonschema.validate(rayservice_of(rendered), rayservice_schema())


def test_crd_validation_catches_a_broken_rayservice(scenario):
    _, rendered = scenario
    broken = json.loads(json.dumps(rayservice_of(rendered)))
    broken["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # must be a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, rayservice_schema())


def test_the_chart_templates_no_crds():
    assert not (CHART_DIR / "crds").exists()
    for path in (CHART_DIR / "templates").rglob("*"):
        if path.is_file():
            assert "kind: CustomResourceDefinition" not in path.read_text(), path
