"""The gRPC API on a cluster: grpc_options in serveConfigV2 and a port named `serve-grpc` on every
Ray pod, which KubeRay 1.7.0 puts on its own serve Service (ports named `serve` or `serve-*`), so
gRPC moves to a new cluster exactly when HTTP does; `spec.serveService` adds its appProtocol."""

from __future__ import annotations

import yaml

from serve_app.config import APP_NAME, SERVE_CONFIG_PATH
from serve_app.grpc_api import DEFAULT_GRPC_MAX_MESSAGE_BYTES, GRPC_MAX_MESSAGE_ENV, SERVICER_FUNCTIONS
from tools.kuberay_model import serve_service

from .conftest import objects_of, pod_templates, ray_container_env, rayservice_of, render_chart, serve_config_of

FILE_GRPC_OPTIONS = yaml.safe_load(SERVE_CONFIG_PATH.read_text())["grpc_options"]


def test_the_servicer_functions_in_the_config_are_the_apps():
    # the project's own service and the Open Inference Protocol's, on the one gRPC port (that each
    # imports, in every rendering: test_import_paths.py)
    assert FILE_GRPC_OPTIONS["grpc_servicer_functions"] == list(SERVICER_FUNCTIONS)


def test_grpc_is_on_by_default_on_kuberays_serve_service():
    rendered = render_chart({})
    assert serve_config_of(rendered)["grpc_options"] == FILE_GRPC_OPTIONS
    port = FILE_GRPC_OPTIONS["port"]
    for template in pod_templates(rayservice_of(rendered)):
        ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
        assert ports["serve-grpc"] == port and ports["serve"] == 8000
        # the local run's limit on a gRPC message, in every Ray process
        assert ray_container_env(template)[GRPC_MAX_MESSAGE_ENV] == str(DEFAULT_GRPC_MAX_MESSAGE_BYTES)
    # no Service of the chart's own: the one KubeRay builds carries both ports, for the active cluster
    assert objects_of(rendered, "Service") == []
    service = serve_service(rayservice_of(rendered), "serving")
    assert service["metadata"]["name"] == "mnist-serve-serve-svc"
    assert service["spec"]["type"] == "ClusterIP"
    assert sorted(service["spec"]["ports"], key=lambda p: p["name"]) == [
        {"name": "serve", "port": 8000},
        {"name": "serve-grpc", "port": port, "appProtocol": "kubernetes.io/h2c"},
    ]
    assert set(service["spec"]["selector"]) == {"ray.io/cluster", "ray.io/serve"}


def test_grpc_off_drops_the_options_the_ports_and_the_service_port():
    rendered = render_chart({"serve": {"grpc": {"enabled": False}}})
    assert "grpc_options" not in serve_config_of(rendered)
    for template in pod_templates(rayservice_of(rendered)):
        assert "serve-grpc" not in {p["name"] for p in template["spec"]["containers"][0]["ports"]}
        assert GRPC_MAX_MESSAGE_ENV not in ray_container_env(template)
    service = serve_service(rayservice_of(rendered), "serving")
    assert [p["name"] for p in service["spec"]["ports"]] == ["serve"]
    notes = next(o["notes"] for p, objs in rendered.items() if p.endswith("NOTES.txt") for o in objs)
    assert "grpc_client" not in notes


def test_the_serve_service_type_is_a_value_and_the_dashboard_stays_inside():
    rayservice = rayservice_of(render_chart({"serve": {"serviceType": "LoadBalancer"}}))
    assert serve_service(rayservice, "serving")["spec"]["type"] == "LoadBalancer"
    assert rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["serviceType"] == "ClusterIP"


def test_the_message_limit_is_a_value():
    for template in pod_templates(rayservice_of(render_chart({"serve": {"grpc": {"maxMessageBytes": 1048576}}}))):
        assert ray_container_env(template)[GRPC_MAX_MESSAGE_ENV] == "1048576"


def test_helm_test_classifies_the_shipped_digit_over_grpc_too():
    pods = {o["metadata"]["name"]: o for o in objects_of(render_chart({}), "Pod")}
    pod = pods["mnist-serve-test-grpc"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["GRPC_TARGET"] == f"mnist-serve-serve-svc.serving.svc.cluster.local:{FILE_GRPC_OPTIONS['port']}"
    assert env["SERVE_APPLICATION"] == APP_NAME
    assert "mnist_pb2_grpc.MnistStub" in container["args"][0]
    # the stubs are in the app image only: a helmTest.image override does not apply to this pod
    other = {o["metadata"]["name"]: o for o in objects_of(render_chart({"helmTest": {"image": "python:3.11"}}), "Pod")}
    assert other["mnist-serve-test-grpc"]["spec"]["containers"][0]["image"] == container["image"]
    assert "mnist-serve-test-grpc" not in {
        o["metadata"]["name"] for o in objects_of(render_chart({"serve": {"grpc": {"enabled": False}}}), "Pod")
    }
