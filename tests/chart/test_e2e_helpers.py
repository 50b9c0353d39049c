"""The e2e suite's helpers (tests/support/kube.py) on objects the chart really renders.

What the e2e suite does on a cluster rests on these: which pods are the head and the workers,
the names of the Services KubeRay creates, where Ray's token is, which values files make each
scenario, what ``helm install``/``upgrade`` arguments set, and that a serve-config-only upgrade
leaves the RayCluster's spec untouched (so KubeRay applies it in place).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import (
    CI_DIR,
    active_cluster,
    auth_secret,
    condition,
    deployment_user_config,
    gcs_fault_tolerant,
    head_serves,
    head_service_name,
    image_values,
    install_args,
    leftovers,
    matches,
    parse_image_ref,
    pod_selector,
    rayservice_of_manifest,
    readiness,
    scenario_values,
    select_pods,
    serve_service_name,
    upgrade_args,
    values_of_args,
)

from .conftest import (
    RELEASE,
    merge_values,
    notes_of,
    objects_of,
    pod_templates,
    rayservice_of,
    render_chart,
    serve_config_of,
)


def render_args(args: list[str], name: str = RELEASE) -> dict[str, Any]:
    """Render the chart with the values a helm argument list passes."""
    values: dict[str, Any] = {}
    for document in values_of_args(args):
        values = merge_values(values, document)
    return render_chart(values, name=name)


def pods_as_kuberay_makes_them(rayservice: dict[str, Any]) -> list[dict[str, Any]]:
    """Running, Ready pods from the RayService's templates, with the labels KubeRay adds."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    groups = [("head", "headgroup", cluster["headGroupSpec"])]
    groups += [("worker", group["groupName"], group) for group in cluster["workerGroupSpecs"]]
    pods = []
    for node_type, group_name, group in groups:
        labels = {**group["template"]["metadata"]["labels"], "ray.io/node-type": node_type, "ray.io/group": group_name}
        pods.append(
            {
                "metadata": {"name": f"{rayservice['metadata']['name']}-{group_name}-x", "labels": labels},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            }
        )
    return pods


@pytest.mark.parametrize("release", [RELEASE, "demo"])
def test_pod_selectors_pick_the_head_and_the_workers_of_the_release(release):
    rayservice = rayservice_of(render_chart(name=release))
    pods = pods_as_kuberay_makes_them(rayservice)
    name = rayservice["metadata"]["name"]
    assert select_pods(pods, pod_selector(release, "head")) == [f"{name}-headgroup-x"]
    assert select_pods(pods, pod_selector(release, "worker")) == [f"{name}-cpu-x", f"{name}-gpu-x"]
    assert select_pods(pods, pod_selector(release, "worker", "gpu")) == [f"{name}-gpu-x"]
    assert select_pods(pods, pod_selector("another-release")) == []
    pods[0]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert select_pods(pods, pod_selector(release, "head"), ready_only=True) == []


@pytest.mark.parametrize(("release", "service"), [(RELEASE, "mnist-serve"), ("demo", "demo-mnist-serve")])
def test_service_names_are_the_ones_the_chart_tells_users_to_port_forward(release, service):
    rendered = render_chart(name=release)
    rayservice = rayservice_of(rendered)
    assert serve_service_name(rayservice) == f"{service}-serve-svc"
    assert head_service_name(rayservice) == f"{service}-head-svc"
    notes = notes_of(rendered)
    assert f"svc/{serve_service_name(rayservice)} 8000:8000" in notes
    assert f"svc/{head_service_name(rayservice)} 8265:8265" in notes


def test_the_auth_secret_is_the_rendered_secret_with_the_token():
    rendered = render_chart()
    name = auth_secret(rayservice_of(rendered))
    (secret,) = [s for s in objects_of(rendered, "Secret") if s["metadata"]["name"] == name]
    assert "auth_token" in {**secret.get("data", {}), **secret.get("stringData", {})}
    assert auth_secret(rayservice_of(render_chart({"auth": {"enabled": False}}))) is None


def test_fault_tolerance_and_the_serve_service_follow_the_scenario():
    default = rayservice_of(render_chart())
    ha = rayservice_of(render_chart(yaml.safe_load((CI_DIR / "ha-values.yaml").read_text())))
    assert not gcs_fault_tolerant(default) and head_serves(default)
    assert gcs_fault_tolerant(ha) and not head_serves(ha)


def test_the_rayservice_is_found_in_a_release_manifest():
    rendered = render_chart()
    manifest = yaml.safe_dump_all(objects_of(rendered))
    assert rayservice_of_manifest(manifest) == rayservice_of(rendered)
    with pytest.raises(ValueError, match="expected one RayService"):
        rayservice_of_manifest(manifest + "---\n" + yaml.safe_dump(rayservice_of(rendered)))


def test_readiness_reads_kuberays_ready_condition():
    rayservice = rayservice_of(render_chart())
    ready, why = readiness(rayservice)
    assert not ready and "no Ready condition yet" in why
    live = copy.deepcopy(rayservice)
    live["status"] = {
        "serviceStatus": "Running",
        "conditions": [
            {"type": "UpgradeInProgress", "status": "False", "reason": "NoPendingCluster"},
            {"type": "Ready", "status": "False", "reason": "Initializing", "message": "waiting"},
        ],
        "activeServiceStatus": {
            "rayClusterName": "mnist-serve-abcde",
            "applicationStatuses": {"mnist": {"status": "DEPLOYING"}},
        },
    }
    ready, why = readiness(live)
    assert not ready and "Initializing" in why and "mnist=DEPLOYING" in why
    condition_ready = condition(live, "Ready")
    assert condition_ready is not None
    live["status"]["conditions"][1].update(status="True", reason="NonZeroServeEndpoints")
    assert readiness(live)[0] and active_cluster(live) == "mnist-serve-abcde"


@pytest.mark.parametrize(
    "ref",
    [
        "registry.example.com:5000/team/mnist-serve:1.2.3",
        "mnist-serve@sha256:" + "b2" * 32,
        "ghcr.io/team/mnist-serve:0123",  # a numeric-looking tag stays a string (--set-string)
        "mnist-serve:1234",
    ],
)
def test_image_values_put_the_image_in_every_ray_container(ref):
    rendered = render_args(install_args(RELEASE, "e2e", [], image_values(ref)))
    templates = pod_templates(rayservice_of(rendered))
    assert {c["image"] for t in templates for c in t["spec"]["containers"]} == {str(parse_image_ref(ref))}


@pytest.mark.parametrize(("gpus", "ha"), [(True, False), (False, False), (True, True), (False, True)])
def test_scenario_values_make_the_scenario(gpus, ha):
    files = scenario_values(gpus, ha)
    assert all(isinstance(path, Path) and path.is_file() for path in files)
    rendered = render_args(install_args(RELEASE, "e2e", files))
    rayservice = rayservice_of(rendered)
    limits = [
        g["template"]["spec"]["containers"][0]["resources"]["limits"]
        for g in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    ]
    assert any("nvidia.com/gpu" in limit for limit in limits) is gpus
    assert gcs_fault_tolerant(rayservice) is ha


def test_a_batch_size_upgrade_changes_only_the_serve_config():
    base = install_args(RELEASE, "e2e", scenario_values(False))
    before = render_args(base)
    after = render_args(base + upgrade_args(RELEASE, "e2e", {"serve.classifier.batching.maxBatchSize": 8}))

    def classifier(rendered: dict[str, Any]) -> dict[str, Any]:
        (app,) = serve_config_of(rendered)["applications"]
        return next(d for d in app["deployments"] if d["name"] == "Classifier")

    assert classifier(before)["user_config"]["max_batch_size"] == 16
    assert classifier(after)["user_config"]["max_batch_size"] == 8
    # Nothing outside serveConfigV2 changes: KubeRay applies it in place, no new RayCluster.
    assert rayservice_of(after)["spec"]["rayClusterConfig"] == rayservice_of(before)["spec"]["rayClusterConfig"]


def test_leftovers_lists_what_an_uninstall_left():
    rendered = render_chart()
    rayservice = rayservice_of(rendered)
    pods = pods_as_kuberay_makes_them(rayservice)
    assert leftovers([rayservice], [], pods[:1]) == {"RayService": ["mnist-serve"], "Pod": ["mnist-serve-headgroup-x"]}
    assert leftovers([], [], []) == {}


def test_the_user_config_is_read_where_ray_puts_it():
    from ray.serve.schema import ApplicationDetails, DeploymentDetails, ServeInstanceDetails

    assert {"applications"} <= set(ServeInstanceDetails.model_fields)
    assert {"deployments"} <= set(ApplicationDetails.model_fields)
    assert {"deployment_config"} <= set(DeploymentDetails.model_fields)
    status = {
        "applications": {
            "mnist": {"deployments": {"Classifier": {"deployment_config": {"user_config": {"max_batch_size": 8}}}}}
        }
    }
    assert deployment_user_config(status, "mnist", "Classifier") == {"max_batch_size": 8}
    assert deployment_user_config(status, "mnist", "Ingress") is None


def test_pod_labels_match_what_the_fault_injector_selects():
    rayservice = rayservice_of(render_chart())
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["metadata"]["labels"]
    assert matches({**head, "ray.io/node-type": "head"}, pod_selector(RELEASE, "head"))
