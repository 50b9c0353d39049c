"""The chart on a real control plane: real Helm, the API server, the scheduler and the KubeRay operator.

Every program is upstream's, built from Go modules by ``scripts/kube-build``
(``tools/kube_local``): etcd, kube-apiserver with the PodSecurity admission, controller-manager,
scheduler, kwok's nodes shaped like ``cluster/kind/gpu.yaml``, the KubeRay operator with its own
RBAC, and Helm. kwok runs no container (docs/kubernetes.md says what that leaves out), so these
tests judge what the API server, Helm, the scheduler and the operator do with the chart: refusals,
admission, the objects the operator builds, where the pods land, and what ``helm uninstall``
leaves. Where ``tools/kuberay_model.py`` and ``tools/kind_scheduling.py`` predict the same thing,
the prediction is checked against the real output in the same run.

The tests of this module share one cluster and run in file order: the first ones need the
operator not installed yet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.support.kube import CommandError, install_args, leftovers, run, wait_until
from tools.chart import CI_DIR, RELEASE, objects_of, render_chart
from tools.kind_scheduling import kind_cluster, why_not
from tools.kube_local.cluster import KWOK_LABEL, RELEASE_NAMESPACE, LocalCluster, read_versions
from tools.kuberay_model import build_pods

NAMESPACE = RELEASE_NAMESPACE
#: Seconds the operator gets to build a release's RayCluster and pods.
OPERATOR_TIMEOUT_S = 120


def helm(cluster: LocalCluster, *args: str, timeout_s: float = 300) -> str:
    """The built Helm against the local cluster."""
    return run([cluster.binary("helm"), "--kubeconfig", str(cluster.kubeconfig), *args], timeout_s=timeout_s)


def helm_records(cluster: LocalCluster) -> list[str]:
    """Helm's release records in the namespace, in any state (Helm keeps each as a Secret)."""
    secrets = cluster.get("secrets", "-n", NAMESPACE, "-l", "owner=helm")["items"]
    return sorted(secret["metadata"]["name"] for secret in secrets)


def scenario_files(scenario: str) -> list[Any]:
    """The ci/ values file of a scenario (the default scenario's file is the chart's defaults)."""
    return [CI_DIR / f"{scenario}-values.yaml"]


def release_objects(cluster: LocalCluster) -> dict[str, list[dict[str, Any]]]:
    """RayServices, RayClusters, pods and Services of the release namespace."""
    found = cluster.get("rayservices,rayclusters,pods,services", "-n", NAMESPACE)["items"]
    by_kind: dict[str, list[dict[str, Any]]] = {"RayService": [], "RayCluster": [], "Pod": [], "Service": []}
    for obj in found:
        by_kind[obj["kind"]].append(obj)
    return by_kind


# ---- the control plane itself ----------------------------------------------------------------


def test_every_component_reports_the_pinned_kubernetes_version(control_plane):
    versions = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    pinned = read_versions()["KUBERNETES_VERSION"]
    assert versions["serverVersion"]["gitVersion"] == pinned
    assert versions["clientVersion"]["gitVersion"] == pinned
    assert helm(control_plane, "version", "--short").startswith(read_versions()["HELM_VERSION"])


def test_the_nodes_are_the_kind_clusters_with_a_gpu_node(control_plane):
    nodes = {node["metadata"]["name"]: node for node in control_plane.get("nodes")["items"]}
    expected = {node.name: node for node in kind_cluster("gpu", control_plane.host).nodes}
    assert set(nodes) == set(expected)
    for name, node in nodes.items():
        labels = {k: v for k, v in node["metadata"]["labels"].items() if k in expected[name].labels}
        assert labels == expected[name].labels, name
        assert (node["spec"].get("taints") or []) == [dict(t) for t in expected[name].taints], name
        assert next(c for c in node["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"
        assert node["metadata"]["labels"][KWOK_LABEL] == "true"
    gpus = {name: node["status"]["allocatable"].get("nvidia.com/gpu") for name, node in nodes.items()}
    assert [name for name, count in gpus.items() if count] == [
        n.name for n in expected.values() if "nvidia.com/gpu" in n.allocatable
    ]


def test_the_release_namespace_enforces_pod_security_restricted(control_plane):
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged-probe", "namespace": NAMESPACE},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]},
    }
    refused = control_plane.kubectl("create", "-f", "-", stdin=json.dumps(privileged), check=False)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr and "privileged" in refused.stderr


# ---- refusals a user sees, before the operator is installed ---------------------------------


def test_without_the_operator_helm_install_is_refused_and_leaves_nothing(control_plane):
    assert control_plane.kubectl("get", "crd", "rayservices.ray.io", check=False).returncode != 0, (
        "this test needs a cluster without KubeRay's CRDs: it must run before the operator fixture"
    )
    with pytest.raises(CommandError) as refused:
        helm(control_plane, *install_args(RELEASE, NAMESPACE))
    message = str(refused.value)
    assert "RayService" in message and "ensure CRDs are installed first" in message, message
    assert helm_records(control_plane) == []
    objects = control_plane.get(
        "all,secrets,configmaps", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}"
    )
    assert objects["items"] == []


def test_a_values_file_the_schema_refuses_is_refused_by_helm_and_leaves_nothing(operator, tmp_path):
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(yaml.safe_dump({"workerGroups": {"gpu": {"replicas": -1}}}))
    with pytest.raises(CommandError) as refused:
        helm(operator, *install_args(RELEASE, NAMESPACE, [bad]))
    assert "values don't meet the specifications of the schema" in str(refused.value), refused.value
    assert helm_records(operator) == []


# ---- each scenario installed, checked against the models, uninstalled ------------------------


@pytest.fixture(scope="module", params=["default", "cpu-only", "ha"])
def installed(request: pytest.FixtureRequest, operator: LocalCluster) -> Iterator[dict[str, Any]]:
    """One scenario installed with real Helm; its objects once every pod exists and is bound to a node.

    The scenario's own pods too (the HA scenario's Redis, whose claim the default StorageClass binds).
    """
    scenario = request.param
    helm(operator, *install_args(RELEASE, NAMESPACE, scenario_files(scenario)))
    rendered = objects_of(render_chart(yaml.safe_load(scenario_files(scenario)[0].read_text()) or {}))
    (rayservice,) = [obj for obj in rendered if obj["kind"] == "RayService"]
    expected_pods = len(build_pods(rayservice, NAMESPACE))

    def built() -> tuple[dict[str, list[dict[str, Any]]] | None, str]:
        objects = release_objects(operator)
        ray_pods = [p for p in objects["Pod"] if "ray.io/cluster" in p["metadata"].get("labels", {})]
        unbound = [p["metadata"]["name"] for p in objects["Pod"] if not p["spec"].get("nodeName")]
        state = (
            f"{len(objects['RayCluster'])} RayCluster(s), {len(ray_pods)}/{expected_pods} Ray pods, unbound: {unbound}"
        )
        return (objects if len(ray_pods) == expected_pods and not unbound else None), state

    objects = wait_until(built, OPERATOR_TIMEOUT_S, f"the operator building the {scenario} scenario's pods")
    try:
        yield {"scenario": scenario, "rendered": rendered, "rayservice": rayservice, **objects}
    finally:
        helm(operator, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m")

        def gone() -> tuple[bool, str]:
            found = release_objects(operator)
            left = leftovers(found["RayService"], found["RayCluster"], found["Pod"])
            claims = [c["metadata"]["name"] for c in operator.get("pvc", "-n", NAMESPACE)["items"]]
            services = [s["metadata"]["name"] for s in found["Service"]]
            return (not left and not services and not claims), json.dumps({**left, "Service": services, "PVC": claims})

        wait_until(gone, 120, f"helm uninstall of the {scenario} scenario leaving nothing")


def test_the_operator_builds_one_raycluster_owned_by_the_rayservice(installed):
    (cluster,) = installed["RayCluster"]
    (owner,) = cluster["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("RayService", installed["rayservice"]["metadata"]["name"])


def test_the_ha_redis_claim_is_bound_by_the_default_storage_class(installed, operator):
    claims = operator.get("pvc", "-n", NAMESPACE)["items"]
    if installed["scenario"] != "ha":
        assert claims == []
        return
    (claim,) = claims
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["storageClassName"] == "standard", claim["status"]


def test_every_pod_is_admitted_under_pod_security_restricted(installed):
    # The namespace enforces restricted: a pod that violated it would not exist.
    assert installed["Pod"], "no pod was admitted"


def test_the_operators_pods_are_what_the_kuberay_model_predicts(installed):
    """Group by group: the ray start command, the environment's names, probes, volumes, restartPolicy."""
    (cluster,) = installed["RayCluster"]
    model = build_pods(installed["rayservice"], NAMESPACE, cluster_name=cluster["metadata"]["name"])
    real = [p for p in installed["Pod"] if "ray.io/group" in p["metadata"]["labels"]]
    differences = []
    for group in sorted({p.group for p in model}):
        (predicted,) = {json.dumps(pod_shape(p.pod), sort_keys=True) for p in model if p.group == group}
        actual = {
            json.dumps(pod_shape(p), sort_keys=True) for p in real if p["metadata"]["labels"]["ray.io/group"] == group
        }
        for shape in actual:
            if shape != predicted:
                differences.append((group, diff_shapes(json.loads(predicted), json.loads(shape))))
    assert not differences, differences


def pod_shape(pod: dict[str, Any]) -> dict[str, Any]:
    """What of a Ray pod the model claims to predict (names that embed a random suffix normalised)."""
    spec = pod["spec"]
    ray = spec["containers"][0]
    env = {e["name"]: e.get("value", "<from>") for e in ray.get("env") or []}
    return {
        "start": env.get("KUBERAY_GEN_RAY_START_CMD", ""),
        "env": sorted(env),
        "readiness": ray.get("readinessProbe"),
        "liveness": ray.get("livenessProbe"),
        "volumes": sorted(v["name"] for v in spec.get("volumes") or [] if not v["name"].startswith("kube-api-access")),
        "restartPolicy": spec.get("restartPolicy"),
        "containers": [c["name"] for c in spec["containers"]],
        "init": [c["name"] for c in spec.get("initContainers") or []],
        "resources": defaulted_resources(ray.get("resources") or {}),
    }


def defaulted_resources(resources: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Resources as the API server stores them: quantities as strings, a request defaulted to its limit."""
    limits = {name: str(value) for name, value in (resources.get("limits") or {}).items()}
    requests = {name: str(value) for name, value in (resources.get("requests") or {}).items()}
    return {"limits": limits, "requests": limits | requests}


def diff_shapes(predicted: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    """Key -> (predicted, actual) where they differ (env names as the sets each side lacks)."""
    found: dict[str, Any] = {}
    for key in predicted:
        if predicted[key] == actual.get(key):
            continue
        if key == "env":
            found[key] = {"only predicted": sorted(set(predicted[key]) - set(actual[key])),
                          "only real": sorted(set(actual[key]) - set(predicted[key]))}  # fmt: skip
        else:
            found[key] = (predicted[key], actual.get(key))
    return found


def test_the_real_scheduler_places_only_where_the_scheduling_model_allows(installed, operator):
    nodes = {node.name: node for node in kind_cluster("gpu", operator.host).nodes}
    disagreements = []
    for pod in installed["Pod"]:
        name, node = pod["metadata"]["name"], pod["spec"].get("nodeName")
        if node:
            reasons = why_not(pod["spec"], nodes[node], frozenset())
            if reasons:
                disagreements.append(f"{name} on {node}, which the model refuses: {reasons}")
        elif any(not why_not(pod["spec"], n, frozenset()) for n in nodes.values()):
            disagreements.append(f"{name} pending, though the model finds a node")
    assert not disagreements, disagreements


def test_gpu_pods_land_on_the_gpu_node_and_nothing_else_does(installed, operator):
    gpu_nodes = {n.name for n in kind_cluster("gpu", operator.host).nodes if "nvidia.com/gpu" in n.allocatable}
    for pod in installed["Pod"]:
        limits = pod["spec"]["containers"][0].get("resources", {}).get("limits", {})
        node = pod["spec"].get("nodeName")
        if "nvidia.com/gpu" in limits:
            assert node in gpu_nodes, pod["metadata"]["name"]
        elif node is not None:
            assert node not in gpu_nodes, pod["metadata"]["name"]


def test_the_head_service_carries_the_dashboard_gcs_and_metrics_ports(installed):
    (cluster,) = installed["RayCluster"]
    head = [s for s in installed["Service"] if s["metadata"]["labels"].get("ray.io/node-type") == "head"]
    assert head, [s["metadata"]["name"] for s in installed["Service"]]
    ports = {p["name"]: p["port"] for p in head[0]["spec"]["ports"]}
    assert {"dashboard": 8265, "gcs-server": 6379, "metrics": 8080}.items() <= ports.items(), ports
    assert head[0]["spec"]["selector"]["ray.io/cluster"] == cluster["metadata"]["name"]
