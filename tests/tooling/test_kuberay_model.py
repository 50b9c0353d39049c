"""tools.kuberay_model against the behaviour of KubeRay 1.7.0's pod.go, service.go and util.go."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from tools.chart import objects_of, render_chart
from tools.kuberay_model import (
    ClusterNames,
    UnsupportedSpecError,
    build_pods,
    classify_upgrade,
    complete_start_params,
    container_args,
    hashed_cluster_spec,
    object_store_of,
    parse_quantity,
    quantity_value,
    ray_start_command,
    readiness_urls,
    serve_service,
)

HEAD_ADDRESS = "c-head-svc.ns.svc.cluster.local:6379"


def ray_container(resources: dict | None = None, ports: list | None = None, env: list | None = None) -> dict:
    return {"name": "ray", "image": "img:1", "resources": resources or {}, "ports": ports or [], "env": env or []}


def rayservice(**cluster_extra) -> dict:
    head = {
        "rayStartParams": {"num-cpus": "0"},
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/instance": "r"}},
            "spec": {
                "containers": [
                    ray_container({"limits": {"cpu": "2", "memory": "4Gi"}}, [{"name": "serve", "containerPort": 8000}])
                ]
            },
        },
    }
    worker = {
        "groupName": "gpu",
        "replicas": 2,
        "minReplicas": 1,
        "maxReplicas": 3,
        "rayStartParams": {},
        "template": {
            "spec": {"containers": [ray_container({"limits": {"cpu": "500m", "memory": "2Gi", "nvidia.com/gpu": 1}})]}
        },
    }
    cluster = {"headGroupSpec": head, "workerGroupSpecs": [worker], **cluster_extra}
    return {
        "kind": "RayService",
        "metadata": {"name": "r"},
        "spec": {"rayClusterConfig": cluster, "serveConfigV2": "{}"},
    }


@pytest.mark.parametrize(
    ("text", "value", "rounded"),
    [
        ("500m", Decimal("0.5"), 1),
        ("2", 2, 2),
        (3, 3, 3),
        ("1Gi", 2**30, 2**30),
        ("1.5G", Decimal("1.5e9"), 1500000000),
    ],
)
def test_quantities_parse_and_round_up_like_resource_quantity_value(text, value, rounded):
    assert parse_quantity(text) == value and quantity_value(text) == rounded


def test_a_bad_quantity_is_an_error():
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity("two")


def test_worker_params_come_from_the_limits_and_kuberays_defaults():
    params = complete_start_params(
        {}, "worker", HEAD_ADDRESS, {"limits": {"cpu": "500m", "memory": "2Gi", "nvidia.com/gpu": 1}}
    )
    assert params == {
        "address": HEAD_ADDRESS,
        "metrics-export-port": "8080",
        "block": "true",
        "dashboard-agent-listen-port": "52365",
        "num-cpus": "1",  # Quantity.Value() rounds 500m up
        "memory": str(2 * 2**30),
        "num-gpus": "1",
    }


def test_requests_stand_in_for_a_missing_cpu_limit_but_not_for_memory():
    params = complete_start_params({}, "worker", HEAD_ADDRESS, {"requests": {"cpu": "3", "memory": "1Gi"}})
    assert params["num-cpus"] == "3" and "memory" not in params


def test_explicit_params_win_and_the_head_gets_a_dashboard_host():
    params = complete_start_params({"num-cpus": "0", "num-gpus": "0"}, "head", "", {"limits": {"cpu": "2"}})
    assert params["num-cpus"] == "0" and params["num-gpus"] == "0" and params["dashboard-host"] == "0.0.0.0"
    assert "address" not in params


def test_a_tpu_limit_becomes_a_custom_resource():
    params = complete_start_params({}, "worker", HEAD_ADDRESS, {"limits": {"google.com/tpu": 4}})
    assert params["resources"] == "'{\"TPU\":4.0}'"


def test_the_command_sorts_flags_and_writes_booleans_as_switches():
    command = ray_start_command(
        "worker", {"block": "true", "num-cpus": "2", "include-dashboard": "false", "x": "false"}
    )
    assert command == "ray start  --block  --include-dashboard=false  --num-cpus=2 "
    assert container_args(command)[:3] == ["/bin/bash", "-c", "--"]
    assert container_args(command)[3].startswith("ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}; ray start")


def test_pods_get_kuberays_labels_env_and_a_dev_shm_of_the_memory_limit():
    head, worker, _ = build_pods(rayservice(), "ns", cluster_name="c")
    assert worker.labels["ray.io/node-type"] == "worker" and worker.labels["ray.io/group"] == "gpu"
    assert worker.labels["ray.io/serve"] == "true" and head.labels["ray.io/serve"] == "false"
    assert head.labels["app.kubernetes.io/name"] == "kuberay" and head.labels["app.kubernetes.io/instance"] == "r"
    env = {e["name"]: e.get("value") for e in worker.ray_container["env"]}
    assert env["FQ_RAY_IP"] == "c-head-svc.ns.svc.cluster.local" and env["RAY_ADDRESS"] == HEAD_ADDRESS
    assert (
        env["RAY_timeout_ms_task_wait_for_death_info"] == "0"
        and env["KUBERAY_GEN_RAY_START_CMD"] == worker.start_command
    )
    assert worker.shm_bytes == 2 * 2**30 and head.shm_bytes == 4 * 2**30
    assert worker.pod["spec"]["initContainers"][0]["name"] == "wait-gcs-ready"
    assert object_store_of(worker).directory == "/dev/shm" and object_store_of(worker).bytes == int(0.3 * 2 * 2**30)


def test_a_mounted_dev_shm_is_kept_and_a_small_one_sends_the_store_to_tmp():
    spec = rayservice()
    template = spec["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    template["volumes"] = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}]
    template["containers"][0]["volumeMounts"] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    worker = build_pods(spec, "ns")[1]
    assert worker.shm_bytes == 256 * 2**20
    assert object_store_of(worker).directory == "/tmp"


def test_autoscaler_v2_adds_the_sidecar_and_restart_policy_never():
    spec = rayservice(enableInTreeAutoscaling=True, autoscalerOptions={"version": "v2", "securityContext": {"a": 1}})
    head, worker, _ = build_pods(spec, "ns")
    assert [c["name"] for c in head.pod["spec"]["containers"]] == ["ray", "autoscaler"]
    assert head.pod["spec"]["containers"][1]["securityContext"] == {"a": 1}
    assert head.start_params["no-monitor"] == "true"
    assert head.pod["spec"]["restartPolicy"] == worker.pod["spec"]["restartPolicy"] == "Never"
    v1 = build_pods(rayservice(enableInTreeAutoscaling=True), "ns")
    assert all("restartPolicy" not in pod.pod["spec"] for pod in v1)


def test_token_auth_and_gcs_fault_tolerance_reach_the_containers():
    spec = rayservice(
        authOptions={"mode": "token", "secretName": "tok"},
        gcsFaultToleranceOptions={
            "redisAddress": "redis:6379",
            "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "p", "key": "k"}}},
        },
    )
    head, worker, _ = build_pods(spec, "ns")
    head_env = {e["name"]: e for e in head.ray_container["env"]}
    assert head_env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "tok", "key": "auth_token"}
    assert head_env["RAY_REDIS_ADDRESS"]["value"] == "redis:6379"
    assert head_env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "p", "key": "k"}
    assert head.start_params["redis-password"] == "$REDIS_PASSWORD"
    worker_env = {e["name"]: e.get("value") for e in worker.ray_container["env"]}
    assert worker_env["RAY_gcs_rpc_server_reconnect_timeout_s"] == "600"
    init_env = {e["name"] for e in worker.pod["spec"]["initContainers"][0]["env"]}
    assert "RAY_AUTH_TOKEN" in init_env


def test_unmodelled_features_are_refused():
    with pytest.raises(UnsupportedSpecError, match="tlsOptions"):
        build_pods(rayservice(tlsOptions={"enabled": True}), "ns")


def test_the_serve_service_carries_every_serve_port_with_the_users_fields():
    spec = rayservice()
    head = spec["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["ports"] += [{"name": "serve-grpc", "containerPort": 9000}, {"name": "metrics", "containerPort": 8080}]
    spec["spec"]["serveService"] = {
        "spec": {
            "type": "NodePort",
            "ports": [{"name": "serve-grpc", "port": 9000, "appProtocol": "kubernetes.io/h2c"}],
        }
    }
    service = serve_service(spec, "ns", cluster_name="c")
    assert service["spec"]["ports"] == [
        {"name": "serve", "port": 8000},
        {"name": "serve-grpc", "port": 9000, "appProtocol": "kubernetes.io/h2c"},
    ]
    assert service["spec"]["type"] == "NodePort" and service["spec"]["selector"] == {
        "ray.io/cluster": "c",
        "ray.io/serve": "true",
    }


def test_the_hash_leaves_out_worker_counts_and_tolerations():
    base = rayservice()
    changed = copy.deepcopy(base)
    group = changed["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    group["replicas"], group["maxReplicas"] = 3, 9
    group["template"]["spec"]["tolerations"] = [{"key": "x", "operator": "Exists"}]
    assert hashed_cluster_spec(base) == hashed_cluster_spec(changed)
    assert classify_upgrade([base], [changed]) == "not-propagated"
    group["template"]["spec"]["containers"][0]["image"] = "img:2"
    assert classify_upgrade([base], [changed]) == "new-cluster"


def test_cluster_names_follow_kuberay():
    names = ClusterNames("svc", "ns", "svc-abcde")
    assert names.head_service_fqdn == "svc-abcde-head-svc.ns.svc.cluster.local"
    assert ClusterNames("svc", "ns").cluster_name.startswith("svc-")


def test_a_rayservice_worker_is_ready_when_its_raylet_and_serve_proxy_answer():
    objects = objects_of(render_chart({}))
    (rayservice,) = [obj for obj in objects if obj["kind"] == "RayService"]
    pods = build_pods(rayservice, "serving")
    worker = next(pod for pod in pods if pod.node_type == "worker")
    assert readiness_urls(worker.ray_container) == [(52365, "/api/local_raylet_healthz"), (8000, "/-/healthz")]
    assert worker.ray_container["readinessProbe"]["failureThreshold"] == 1
    head = next(pod for pod in pods if pod.node_type == "head")
    assert head.ray_container["readinessProbe"]["httpGet"]["path"] == "/api/healthz"
    assert readiness_urls(head.ray_container) == []
