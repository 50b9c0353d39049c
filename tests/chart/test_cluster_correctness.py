"""What a real cluster would make of the rendered chart: the pods KubeRay 1.7.0 builds from each
scenario's RayService (tools.kuberay_model), scheduled on the kind clusters of cluster/kind/
(tools.kind_scheduling), held to Pod Security "restricted", behind the NetworkPolicies."""

from __future__ import annotations

import copy
import json

import kubernetes_validate
import pytest

from tests.support.kube_rules import network_policy_allows, restricted_violations
from tools.kind_scheduling import (
    WORKSTATION,
    Host,
    kind_cluster,
    pods_of_workloads,
    release_pods,
    schedule,
    unschedulable,
)
from tools.kuberay_model import build_pods, object_store_of, serve_service

from .conftest import (
    NAMESPACE,
    SCENARIOS,
    objects_of,
    pod_templates,
    rayservice_of,
    render_chart,
    scenario_values,
    serve_config_of,
)

#: The kind cluster each scenario is meant for: cpu-only on kind without GPUs, the rest on the GPU pool.
KIND_OF_SCENARIO = {name: "cpu" if name == "cpu-only" else "gpu" for name in SCENARIOS}
KUBERNETES_VERSION = "1.32.0"


def cluster_pods(objects: list[dict], cluster_name: str = "") -> list[dict]:
    """Every pod of a release in the test namespace (Ray pods as KubeRay builds them, then the chart's)."""
    return release_pods(objects, NAMESPACE, cluster_name)


# --- 1. scheduling on the kind clusters -------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_schedules_on_its_kind_cluster(name):
    objects = objects_of(render_chart(scenario_values(name)))
    placements = schedule(cluster_pods(objects), kind_cluster(KIND_OF_SCENARIO[name]))
    assert unschedulable(placements) == {}
    assert len(placements) == len(cluster_pods(objects))


@pytest.mark.parametrize("name", ["default", "cpu-only"])
def test_a_blue_green_upgrade_has_room_for_two_clusters_on_a_workstation(name):
    objects = objects_of(render_chart(scenario_values(name)))
    rayservice = rayservice_of({"objects": objects})
    both = [
        pod.pod for cluster in ("old00", "new00") for pod in build_pods(rayservice, NAMESPACE, cluster_name=cluster)
    ]
    assert unschedulable(schedule(both, kind_cluster(KIND_OF_SCENARIO[name], WORKSTATION))) == {}


def test_the_old_default_gpu_selector_would_never_schedule_on_kind_without_gpus():
    # Helm merges maps: `nodeSelector: {}` in a values file kept a default selector. The chart has
    # none now; this is the pod it used to render for ci/cpu-only-values.yaml.
    values = copy.deepcopy(scenario_values("cpu-only"))
    values["workerGroups"]["gpu"]["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    refused = unschedulable(schedule(cluster_pods(objects_of(render_chart(values))), kind_cluster("cpu")))
    (pod,) = refused
    assert "gpu-worker" in pod
    assert all(any("nvidia.com/gpu.present" in reason for reason in reasons) for reasons in refused[pod].values())


def test_gpu_pods_reach_gpu_nodes_by_their_limit_and_toleration_not_a_selector():
    gpu_group = rayservice_of(render_chart({}))["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    spec = gpu_group["template"]["spec"]
    assert "nodeSelector" not in spec
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    # A provider's selector renders on its own, without a default beside it.
    selector = {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    gke = rayservice_of(render_chart({"workerGroups": {"gpu": {"nodeSelector": selector}}}))
    assert gke["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["nodeSelector"] == selector


def test_without_a_gpu_node_a_gpu_pod_waits_and_the_model_says_why():
    objects = objects_of(render_chart({}))
    refused = unschedulable(schedule(cluster_pods(objects), kind_cluster("cpu")))
    assert list(refused) == ["mnist-serve-sim00-gpu-worker-0"]
    assert any("insufficient nvidia.com/gpu" in r for nodes in refused.values() for rs in nodes.values() for r in rs)


def test_two_gpu_clusters_need_more_than_a_four_core_workstation_in_ha():
    # Reported, not hidden: a blue/green upgrade of the HA scenario wants 4 GPU pods of 2 CPUs.
    rayservice = rayservice_of(render_chart(scenario_values("ha")))
    both = [
        pod.pod for cluster in ("old00", "new00") for pod in build_pods(rayservice, NAMESPACE, cluster_name=cluster)
    ]
    assert unschedulable(schedule(both, kind_cluster("gpu", WORKSTATION)))
    assert unschedulable(schedule(both, kind_cluster("gpu", Host(cpus=8, memory="32Gi")))) == {}


# --- 2. autoscaler v2 ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_autoscaler_v2_is_explicit_so_ray_pods_are_never_restarted_in_place(name):
    rayservice = rayservice_of(render_chart(scenario_values(name)))
    options = rayservice["spec"]["rayClusterConfig"]["autoscalerOptions"]
    assert options["version"] == "v2"
    for pod in build_pods(rayservice, NAMESPACE):
        assert pod.pod["spec"]["restartPolicy"] == "Never", pod.name
    head = build_pods(rayservice, NAMESPACE)[0]
    assert {"name": "RAY_enable_autoscaler_v2", "value": "true"} in head.ray_container["env"]
    assert head.start_params["no-monitor"] == "true"


def test_without_the_autoscaler_the_pods_keep_kubernetes_restarts():
    rayservice = rayservice_of(render_chart({"autoscaler": {"enabled": False}}))
    assert "autoscalerOptions" not in rayservice["spec"]["rayClusterConfig"]
    assert all("restartPolicy" not in pod.pod["spec"] for pod in build_pods(rayservice, NAMESPACE))


# --- 3. incremental upgrades ------------------------------------------------------------------


def kuberay_upgrade_errors(rayservice: dict) -> list[str]:
    """KubeRay 1.7.0's ValidateRayServiceSpec for the upgrade strategy (utils/validation.go)."""
    spec = rayservice["spec"]
    strategy = spec.get("upgradeStrategy") or {}
    if strategy.get("type") not in (None, "None", "NewCluster", "NewClusterWithIncrementalUpgrade"):
        return ["invalid type"]
    if strategy.get("type") != "NewClusterWithIncrementalUpgrade":
        return []
    errors = []
    if not spec["rayClusterConfig"].get("enableInTreeAutoscaling"):
        errors.append("Ray Autoscaler is required")
    options = strategy.get("clusterUpgradeOptions")
    if options is None:
        return [*errors, "ClusterUpgradeOptions are required"]
    surge = options.get("maxSurgePercent", 100)
    step = options.get("stepSizePercent")
    if not 0 <= surge <= 100:
        errors.append("maxSurgePercent")
    if step is None or not 0 <= step <= 100 or step > surge:
        errors.append("stepSizePercent")
    if not options.get("intervalSeconds") or options["intervalSeconds"] <= 0:
        errors.append("intervalSeconds")
    if not options.get("gatewayClassName"):
        errors.append("gatewayClassName")
    return errors


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_passes_kuberays_upgrade_validation(name):
    assert kuberay_upgrade_errors(rayservice_of(render_chart(scenario_values(name)))) == []


def test_an_incremental_upgrade_renders_the_options_kuberay_requires():
    values = {
        "upgradeStrategy": {
            "type": "NewClusterWithIncrementalUpgrade",
            "clusterUpgradeOptions": {"gatewayClassName": "istio", "stepSizePercent": 10, "intervalSeconds": 30},
        }
    }
    rayservice = rayservice_of(render_chart(values))
    assert rayservice["spec"]["upgradeStrategy"] == {
        "type": "NewClusterWithIncrementalUpgrade",
        "clusterUpgradeOptions": {
            "maxSurgePercent": 100,
            "stepSizePercent": 10,
            "intervalSeconds": 30,
            "gatewayClassName": "istio",
        },
    }
    assert kuberay_upgrade_errors(rayservice) == []
    # the options are KubeRay's only for that strategy: never rendered beside another one
    assert "clusterUpgradeOptions" not in rayservice_of(render_chart({}))["spec"]["upgradeStrategy"]


# --- 5. GPUs that are not there -----------------------------------------------------------------


def test_runtime_class_goes_on_gpu_pods_only():
    rayservice = rayservice_of(render_chart({"workerGroups": {"gpu": {"runtimeClassName": "nvidia"}}}))
    classes = {pod.group: pod.pod["spec"].get("runtimeClassName") for pod in build_pods(rayservice, NAMESPACE)}
    assert classes == {"headgroup": None, "gpu": "nvidia", "cpu": None}
    assert (
        "runtimeClassName"
        not in rayservice_of(render_chart({}))["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    )


def test_a_missing_runtime_class_is_reported_by_the_scheduler_model():
    objects = objects_of(render_chart({"workerGroups": {"gpu": {"runtimeClassName": "nvidia"}}}))
    assert unschedulable(schedule(cluster_pods(objects), kind_cluster("gpu"))) == {}
    refused = unschedulable(schedule(cluster_pods(objects), kind_cluster("cpu")))
    assert any(
        "RuntimeClass nvidia does not exist" in r for nodes in refused.values() for rs in nodes.values() for r in rs
    )


@pytest.mark.parametrize("name", SCENARIOS)
def test_only_a_simulated_gpu_group_lets_the_classifier_run_without_cuda(name):
    rayservice = rayservice_of(render_chart(scenario_values(name)))
    simulated = scenario_values(name).get("workerGroups", {}).get("gpu", {}).get("simulateGpus", False)
    for pod in build_pods(rayservice, NAMESPACE):
        env = {e["name"]: e.get("value") for e in pod.ray_container["env"]}
        expected = "1" if (simulated and pod.group == "gpu") else None
        assert env.get("MNIST_SERVE_SIMULATED_GPUS") == expected, pod.name


# --- 6. /dev/shm and the object store ---------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_object_store_fits_in_dev_shm_in_every_pod(name):
    rayservice = rayservice_of(render_chart(scenario_values(name)))
    for template in pod_templates(rayservice):
        assert "volumes" not in template["spec"], "KubeRay sizes /dev/shm; the chart must not pin it"
    for pod in build_pods(rayservice, NAMESPACE):
        store = object_store_of(pod)
        assert store.directory == "/dev/shm", (pod.name, store)
        assert pod.shm_bytes == pod.memory_limit_bytes


def test_a_one_gib_dev_shm_sent_the_gpu_workers_object_store_to_tmp():
    # What the chart rendered before: KubeRay keeps a mounted /dev/shm as it is.
    rayservice = rayservice_of(render_chart({}))
    template = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    template["volumes"] = [{"name": "shared-mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}]
    template["containers"][0]["volumeMounts"] = [{"name": "shared-mem", "mountPath": "/dev/shm"}]
    gpu_pod = next(pod for pod in build_pods(rayservice, NAMESPACE) if pod.group == "gpu")
    assert object_store_of(gpu_pod).directory == "/tmp"


# --- 7. helm test pods pull nothing -----------------------------------------------------------


def test_helm_test_pods_run_beside_the_head_so_the_app_image_is_already_there():
    objects = objects_of(render_chart({}))
    tests = [o for o in objects if o["kind"] == "Pod"]
    assert {t["metadata"]["name"] for t in tests} == {"mnist-serve-test-predict", "mnist-serve-test-grpc"}
    placements = {p.pod: p.node for p in schedule(cluster_pods(objects), kind_cluster("gpu"))}
    for test in tests:
        assert placements[test["metadata"]["name"]] == placements["mnist-serve-sim00-head-0"]
        assert test["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


# --- 9. hardening -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_pod_meets_pod_security_restricted(name):
    objects = objects_of(render_chart({**scenario_values(name), "networkPolicy": {"enabled": True}}))
    pods = cluster_pods(objects)
    assert any(c["name"] == "autoscaler" for pod in pods for c in pod["spec"]["containers"])
    assert any(c["name"] == "wait-gcs-ready" for pod in pods for c in pod["spec"].get("initContainers") or [])
    problems = {pod["metadata"]["name"]: restricted_violations(pod["spec"]) for pod in pods}
    assert {name: found for name, found in problems.items() if found} == {}


def test_the_restricted_check_catches_what_the_chart_used_to_render():
    rayservice = rayservice_of(render_chart({}))
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    head["securityContext"].pop("seccompProfile")
    head["containers"][0]["securityContext"].pop("seccompProfile")
    rayservice["spec"]["rayClusterConfig"]["autoscalerOptions"].pop("securityContext")
    problems = restricted_violations(build_pods(rayservice, NAMESPACE)[0].pod["spec"])
    assert "ray-head: seccompProfile is None, not RuntimeDefault or Localhost" in problems
    assert "autoscaler: allowPrivilegeEscalation is not false" in problems


def ray_source(pod_labels: dict) -> dict:
    return {
        "namespace": NAMESPACE,
        "namespace_labels": {"kubernetes.io/metadata.name": NAMESPACE},
        "labels": pod_labels,
    }


def test_network_policies_open_serve_to_the_namespace_and_the_dashboard_to_the_operator_only():
    objects = objects_of(render_chart({**scenario_values("ha"), "networkPolicy": {"enabled": True}}))
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    for policy in policies:
        kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    pods = build_pods(rayservice_of({"o": objects}), NAMESPACE)
    head, worker = pods[0].labels, next(p for p in pods if p.node_type == "worker").labels
    (redis,) = [p["metadata"]["labels"] for p in pods_of_workloads(objects) if "redis" in p["metadata"]["name"]]
    helm_test = ray_source({"app.kubernetes.io/component": "helm-test"})
    operator = {
        "namespace": "ray-system",
        "namespace_labels": {"kubernetes.io/metadata.name": "ray-system"},
        "labels": {"app.kubernetes.io/name": "kuberay-operator"},
    }
    stranger = {"namespace": "other", "namespace_labels": {"kubernetes.io/metadata.name": "other"}, "labels": {}}

    def allows(target: dict, source: dict, port: int) -> bool:
        return network_policy_allows(policies, NAMESPACE, target, source, port)

    assert allows(worker, helm_test, 8000) and allows(worker, helm_test, 9000)
    assert not allows(worker, stranger, 8000)
    assert not allows(head, helm_test, 8265) and not allows(head, helm_test, 6379)
    assert allows(head, operator, 8265) and allows(head, operator, 6379)
    assert not allows(worker, operator, 10002)
    assert allows(head, ray_source(worker), 6379) and allows(worker, ray_source(head), 10002)
    assert allows(redis, ray_source(worker), 6379) and not allows(redis, helm_test, 6379)
    assert not allows(head, helm_test, 8080)
    scraper = {**stranger, "namespace": "monitoring", "namespace_labels": {"kubernetes.io/metadata.name": "monitoring"}}
    opened = objects_of(
        render_chart(
            {
                "networkPolicy": {
                    "enabled": True,
                    "metricsFrom": [
                        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
                    ],
                }
            }
        )
    )
    opened_policies = [o for o in opened if o["kind"] == "NetworkPolicy"]
    assert network_policy_allows(opened_policies, NAMESPACE, head, scraper, 8080)
    assert not network_policy_allows(opened_policies, NAMESPACE, head, scraper, 8265)


def test_no_network_policy_unless_asked():
    assert objects_of(render_chart(scenario_values("ha")), "NetworkPolicy") == []


def test_with_an_existing_secret_every_render_is_the_same():
    # helm template and GitOps tools render without `lookup`: a chart-made token would change
    # on every render. With auth.existingSecret (and redis.existingSecret) nothing random remains.
    values = {
        **scenario_values("ha"),
        "auth": {"existingSecret": "ray-token"},
        "redis": {"enabled": True, "existingSecret": "redis-pass"},
    }
    first, second = (json.dumps(objects_of(render_chart(values)), sort_keys=True) for _ in range(2))
    assert first == second
    assert objects_of(render_chart(values), "Secret") == []


# --- 10. high availability ----------------------------------------------------------------------


def test_the_ha_scenario_has_no_single_pod_whose_loss_is_an_outage():
    rendered = render_chart(scenario_values("ha"))
    (app,) = serve_config_of(rendered)["applications"]
    request_path = {d["name"]: d for d in app["deployments"] if d["name"] in ("Ingress", "Preprocessor", "Classifier")}
    assert len(request_path) == 3
    for deployment in request_path.values():
        assert deployment["num_replicas"] >= 2 and deployment["max_replicas_per_node"] == 1
    groups = {g["groupName"]: g for g in rayservice_of(rendered)["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert groups["cpu"]["replicas"] >= 2 and groups["gpu"]["replicas"] >= 2
    assert rayservice_of(rendered)["spec"]["excludeHeadPodFromServeSvc"] is True
    # the serve Service then selects workers only (the head's ray.io/serve stays false)
    service = serve_service(rayservice_of(rendered), NAMESPACE)
    head = build_pods(rayservice_of(rendered), NAMESPACE)[0]
    assert head.labels["ray.io/serve"] == "false" and service["spec"]["selector"]["ray.io/serve"] == "true"


def test_the_default_install_warns_that_deleting_a_worker_is_an_outage():
    notes = next(o["notes"] for p, objs in render_chart({}).items() if p.endswith("NOTES.txt") for o in objs)
    assert "One replica of: ingress, preprocessor" in notes and "ha-values.yaml" in notes
    ha_notes = next(
        o["notes"] for p, objs in render_chart(scenario_values("ha")).items() if p.endswith("NOTES.txt") for o in objs
    )
    assert "One replica of" not in ha_notes
