"""KubeRay facts the rendered chart must respect, checked on every ci/ scenario."""

from __future__ import annotations

import re

import pytest
import yaml

from serve_app.local.http_entry import DEFAULT_HTTP_ENTRY, ENTRY_VARIABLES, HTTP_ENTRIES

from .conftest import (
    CHART_DIR,
    pod_templates,
    ray_container_env,
    rayservice_of,
    render_chart,
    scenario_values,
    serve_config_of,
)

#: Serve's switches between its proxy, HAProxy and direct ingress.
SERVE_SWITCHES = {
    "RAY_SERVE_ENABLE_HA_PROXY",
    "RAY_SERVE_ENABLE_DIRECT_INGRESS",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED",
    "RAY_SERVE_HAPROXY_RETRY_ON",
    "RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S",
}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def test_head_takes_no_replicas_and_declares_serve_and_dashboard_ports(scenario):
    _, rendered = scenario
    head = rayservice_of(rendered)["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["num-gpus"] == "0"
    ports = {port["name"]: port["containerPort"] for port in head["template"]["spec"]["containers"][0]["ports"]}
    assert ports["serve"] == 8000 and ports["dashboard"] == 8265 and ports["metrics"] == 8080
    assert head["serviceType"] == "ClusterIP"
    assert not head.get("enableIngress")


def test_every_ray_start_param_is_a_string(scenario):
    _, rendered = scenario
    cluster = rayservice_of(rendered)["spec"]["rayClusterConfig"]
    for params in [cluster["headGroupSpec"]["rayStartParams"]] + [
        g["rayStartParams"] for g in cluster["workerGroupSpecs"]
    ]:
        assert all(isinstance(value, str) for value in params.values()), params


def test_name_is_a_short_dns_label_and_serve_port_matches(scenario):
    _, rendered = scenario
    rayservice = rayservice_of(rendered)
    assert len(rayservice["metadata"]["name"]) <= 47 and DNS_1035.match(rayservice["metadata"]["name"])
    assert serve_config_of(rendered)["http_options"]["port"] == 8000


def test_gpu_group_fits_the_packed_classifier_fractions(scenario):
    name, rendered = scenario
    cluster = rayservice_of(rendered)["spec"]["rayClusterConfig"]
    gpu_group = next(g for g in cluster["workerGroupSpecs"] if g["groupName"] == "gpu")
    container = gpu_group["template"]["spec"]["containers"][0]
    limit = container["resources"].get("limits", {}).get("nvidia.com/gpu")
    gpus_per_pod = int(gpu_group["rayStartParams"]["num-gpus"]) if limit is None else int(limit)
    if name == "cpu-only":
        assert limit is None and gpu_group["rayStartParams"]["num-gpus"] == "1"
    else:
        assert limit >= 1 and "num-gpus" not in gpu_group["rayStartParams"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu_group["template"]["spec"][
            "tolerations"
        ]
    (app,) = serve_config_of(rendered)["applications"]
    classifier = next(d for d in app["deployments"] if d["name"] == "Classifier")
    fraction = classifier["ray_actor_options"]["num_gpus"]
    replicas = classifier.get("num_replicas") or classifier["autoscaling_config"]["max_replicas"]
    assert 0 < fraction <= gpus_per_pod
    assert replicas * fraction <= gpu_group["maxReplicas"] * gpus_per_pod


def test_cpu_only_deployments_are_pinned_to_the_cpu_group(scenario):
    _, rendered = scenario
    cluster = rayservice_of(rendered)["spec"]["rayClusterConfig"]
    cpu_group = next(g for g in cluster["workerGroupSpecs"] if g["groupName"] == "cpu")
    advertised = yaml.safe_load(cpu_group["rayStartParams"]["resources"].strip("'"))
    (app,) = serve_config_of(rendered)["applications"]
    for deployment in app["deployments"]:
        wanted = deployment["ray_actor_options"].get("resources", {})
        if deployment["name"] == "Classifier":
            assert wanted == {}
        else:
            assert set(wanted) == set(advertised)


def test_no_chart_version_inside_pod_templates(scenario):
    _, rendered = scenario
    for template in pod_templates(rayservice_of(rendered)):
        labels = template["metadata"]["labels"]
        assert "helm.sh/chart" not in labels and "app.kubernetes.io/version" not in labels
        # KubeRay's head Service selects on app.kubernetes.io/name=kuberay: never override it.
        assert "app.kubernetes.io/name" not in labels
        assert labels["app.kubernetes.io/instance"] == "mnist-serve"


def test_chart_bump_does_not_change_the_cluster_spec():
    # A new chart version must not touch rayClusterConfig (that would rebuild the cluster).
    first = rayservice_of(render_chart({}))["spec"]["rayClusterConfig"]
    again = rayservice_of(render_chart({"commonLabels": {"team": "ml"}}))["spec"]["rayClusterConfig"]
    assert first == again


def test_ray_container_is_first_and_runs_as_non_root(scenario):
    _, rendered = scenario
    for template in pod_templates(rayservice_of(rendered)):
        assert template["spec"]["containers"][0]["name"].startswith("ray-")
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True


def test_token_auth_is_on_by_default_with_a_created_secret(scenario):
    _, rendered = scenario
    auth = rayservice_of(rendered)["spec"]["rayClusterConfig"]["authOptions"]
    assert auth == {"mode": "token", "secretName": "mnist-serve-ray-auth"}
    secrets = {
        obj["metadata"]["name"]: obj for objects in rendered.values() for obj in objects if obj.get("kind") == "Secret"
    }
    assert "auth_token" in secrets["mnist-serve-ray-auth"]["data"]


def test_existing_auth_secret_is_used_and_none_created():
    rendered = render_chart({"auth": {"existingSecret": "my-token"}})
    assert rayservice_of(rendered)["spec"]["rayClusterConfig"]["authOptions"]["secretName"] == "my-token"
    assert not [o for objects in rendered.values() for o in objects if o.get("kind") == "Secret"]


def test_auth_can_be_turned_off_for_throwaway_clusters():
    assert "authOptions" not in rayservice_of(render_chart({"auth": {"enabled": False}}))["spec"]["rayClusterConfig"]


def test_ha_wires_gcs_fault_tolerance_to_the_charts_redis():
    rendered = render_chart(scenario_values("ha"))
    spec = rayservice_of(rendered)["spec"]
    assert spec["excludeHeadPodFromServeSvc"] is True
    options = spec["rayClusterConfig"]["gcsFaultToleranceOptions"]
    assert options["redisAddress"] == "mnist-serve-redis.serving.svc.cluster.local:6379"
    assert options["redisPassword"]["valueFrom"]["secretKeyRef"] == {
        "name": "mnist-serve-redis",
        "key": "redis-password",
    }
    kinds = {obj["kind"] for objects in rendered.values() for obj in objects if "kind" in obj}
    assert {"StatefulSet", "Service"} <= kinds
    statefulset = next(o for objects in rendered.values() for o in objects if o.get("kind") == "StatefulSet")
    assert "--requirepass" in statefulset["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"


def test_ha_with_an_external_redis():
    rendered = render_chart(
        {"ha": {"enabled": True}, "redis": {"external": {"address": "redis.example:6379", "existingSecret": "ext"}}}
    )
    options = rayservice_of(rendered)["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]
    assert options["redisAddress"] == "redis.example:6379"
    assert options["redisPassword"]["valueFrom"]["secretKeyRef"]["name"] == "ext"
    assert not [o for objects in rendered.values() for o in objects if o.get("kind") == "StatefulSet"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, "mnist-serve:0.1.0"),
        ({"image": {"tag": "v2"}}, "mnist-serve:v2"),
        ({"image": {"repository": "r/m", "digest": "sha256:" + "a" * 64}}, "r/m@sha256:" + "a" * 64),
    ],
)
def test_image_reference(values, expected):
    for template in pod_templates(rayservice_of(render_chart(values))):
        assert template["spec"]["containers"][0]["image"] == expected


def test_helm_test_pod_sends_the_shipped_digit_to_predict():
    rendered = render_chart({})
    test_objects = [o for path, objects in rendered.items() if "/tests/" in path for o in objects]
    pod = next(o for o in test_objects if o["kind"] == "Pod")
    configmap = next(o for o in test_objects if o["kind"] == "ConfigMap")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["SERVE_URL"] == "http://mnist-serve-serve-svc.serving.svc.cluster.local:8000"
    from serve_app.training.examples import EXAMPLES_DIR

    assert yaml.safe_load(configmap["data"]["digit.json"]) == yaml.safe_load((EXAMPLES_DIR / "digit.json").read_text())


def test_notes_are_a_runbook():
    from .conftest import notes_of

    notes = notes_of(render_chart({}))
    for step in (
        "kubectl -n serving wait --for=condition=Ready rayservice/mnist-serve",
        "port-forward svc/mnist-serve-serve-svc 8000:8000",
        "curl -s -X POST localhost:8000/predict",
        "curl -s localhost:8000/v2/health/ready",
        "curl -s localhost:8000/v2/models/mnist-cnn\n",
        "helm test mnist-serve",
        "port-forward svc/mnist-serve-head-svc 8265:8265",
    ):
        assert step in notes


@pytest.mark.parametrize("entry", HTTP_ENTRIES)
def test_every_ray_pod_gets_the_http_entry_s_variables(render, entry):
    templates = pod_templates(rayservice_of(render({"serve": {"httpEntry": entry}})))
    for template in templates:
        env = ray_container_env(template)
        serve_switches = {key: value for key, value in env.items() if key in SERVE_SWITCHES}
        # the same table as the local run's (serve_app.local.http_entry), on the head and every worker group
        assert serve_switches == ENTRY_VARIABLES[entry]


def test_the_chart_s_default_entry_is_the_local_default(scenario):
    name, rendered = scenario
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert values["serve"]["httpEntry"] == DEFAULT_HTTP_ENTRY
    entry = scenario_values(name).get("serve", {}).get("httpEntry", DEFAULT_HTTP_ENTRY)
    expected = ENTRY_VARIABLES[entry]["RAY_SERVE_ENABLE_HA_PROXY"]
    for template in pod_templates(rayservice_of(rendered)):
        assert ray_container_env(template)["RAY_SERVE_ENABLE_HA_PROXY"] == expected
