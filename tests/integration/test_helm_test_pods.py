"""``helm test`` as rendered, run against the live local app: the test pods' own scripts, not a copy.

Each hook Pod of the rendered chart is run as a process: its container's command and script, its
environment with the serve Service's address swapped for the local app's, and its ConfigMap's digit
where the pod mounts it. What passes here is what ``helm test mnist-serve`` runs on a cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chart.conftest import serve_config_of
from tools.chart import NAMESPACE, RELEASE, objects_of, render_chart

SERVICE_HOST = f"{RELEASE}-serve-svc.{NAMESPACE}.svc.cluster.local"


@pytest.fixture(scope="module")
def rendered():
    return render_chart({})


def hook_pods(rendered) -> dict[str, dict]:
    return {
        pod["metadata"]["name"]: pod
        for pod in objects_of(rendered, "Pod")
        if pod["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    }


def run_pod_script(pod: dict, rendered, local_serve, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The pod's container as a local process, its mounts and Service addresses made local."""
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["python", "-c"]
    script = container["args"][0]
    for mount in container.get("volumeMounts", []):
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
        (configmap,) = [
            o for o in objects_of(rendered, "ConfigMap") if o["metadata"]["name"] == volume["configMap"]["name"]
        ]
        local = tmp_path / mount["name"]
        local.mkdir(exist_ok=True)
        for key, text in configmap["data"].items():
            (local / key).write_text(text)
        script = script.replace(mount["mountPath"] + "/", f"{local}/")
    # the serve Service's two ports (KubeRay's serve-svc: serve 8000, serve-grpc) -> the local app's
    chart_grpc_port = serve_config_of(rendered)["grpc_options"]["port"]
    addresses = {
        f"http://{SERVICE_HOST}:8000": local_serve.base_url,
        f"{SERVICE_HOST}:{chart_grpc_port}": local_serve.grpc_target,
    }
    env = {}
    for variable in container.get("env", []):
        env[variable["name"]] = addresses.get(variable["value"], variable["value"])
    assert set(addresses.values()) & set(env.values()), f"{pod['metadata']['name']} addresses no serve port"
    return subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.parametrize(
    ("pod_name", "expected_lines"),
    [
        ("mnist-serve-test-predict", ["/predict classified", "the Open Inference Protocol classified"]),
        ("mnist-serve-test-grpc", ["gRPC Predict classified", "gRPC ModelInfer classified"]),
    ],
)
def test_the_rendered_helm_test_pod_passes_against_the_app(rendered, local_serve, tmp_path, pod_name, expected_lines):
    pods = hook_pods(rendered)
    assert set(pods) == {"mnist-serve-test-predict", "mnist-serve-test-grpc"}
    done = run_pod_script(pods[pod_name], rendered, local_serve, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(expected_lines)
    for line, expected in zip(lines, expected_lines, strict=True):
        assert line.startswith("helm test: " + expected) and "[7]" in line, line
