"""The cluster recipes without a cluster: kind configurations, pinned versions, scripts.

* ``cluster/kind/*.yaml`` are decoded as kind decodes them (strictly, into the Go types of
  ``kind.x-k8s.io/v1alpha4``, copied from kind v0.32.0 in tests/schemas), and the chart's pods
  (as KubeRay builds them) schedule on the nodes they create (tools/kind_scheduling.py);
* every version lives in cluster/versions.env and the files that repeat one agree with it;
* every shell script passes shellcheck;
* the scripts run against fake ``docker``/``kind``/``helm``/``kubectl`` binaries: they stop with
  a clear message when a prerequisite is missing, and otherwise issue the expected commands,
  creating nothing twice.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from serve_app.config import REPO_ROOT
from tests.chart.conftest import NAMESPACE, objects_of, render_chart, scenario_values
from tests.support.kube_rules import restricted_violations
from tools.kind_scheduling import kind_cluster, release_pods, schedule, unschedulable

CLUSTER_DIR = REPO_ROOT / "cluster"
KIND_DIR = CLUSTER_DIR / "kind"
KIND_CONFIGS = {"cpu": KIND_DIR / "cpu.yaml", "gpu": KIND_DIR / "gpu.yaml"}
KIND_TYPES = REPO_ROOT / "tests" / "schemas" / "kind-v1alpha4-types.go"
VALUES = yaml.safe_load((REPO_ROOT / "charts" / "mnist-serve" / "values.yaml").read_text())
KUBERNETES_VERSION = "1.36.0"  # the kind node image's minor version (cluster/versions.env)


def read_versions() -> dict[str, str]:
    """cluster/versions.env as a dict (plain KEY=value lines)."""
    versions = {}
    for line in (CLUSTER_DIR / "versions.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


VERSIONS = read_versions()


# --- kind's v1alpha4 types, read from kind's own source ----------------------------------------


@cache
def kind_types() -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """(struct name -> {yaml field: Go type}, string alias -> allowed values) from kind's types.go."""
    source = re.sub(r"/\*.*?\*/", "", KIND_TYPES.read_text(), flags=re.S)
    source = re.sub(r"//[^\n]*", "", source)
    structs: dict[str, dict[str, str]] = {}
    for struct in re.finditer(r"^type (\w+) struct \{(.*?)^\}", source, re.M | re.S):
        fields: dict[str, str] = {}
        for name, go_type, tag in re.findall(r'^\s*(\w+)(?:\s+([\w\[\]\*\.]+))?\s+`yaml:"([^"]*)"', struct[2], re.M):
            yaml_name, *options = tag.split(",")
            fields[f"<inline>{name}" if "inline" in options else yaml_name] = go_type or name
        structs[struct[1]] = fields
    aliases: dict[str, list[str]] = {name: [] for name in re.findall(r"^type (\w+) string\s*$", source, re.M)}
    for alias, value in re.findall(r'^\s*\w+\s+(\w+)\s*=\s*"([^"]*)"', source, re.M):
        aliases[alias].append(value)
    return structs, aliases


def kind_problems(value: Any, go_type: str = "Cluster", path: str = "") -> list[str]:
    """What kind's strict decoding would reject in ``value`` (decoded as ``go_type``)."""
    structs, aliases = kind_types()
    where = path or "the configuration"
    if go_type.startswith("*"):
        return kind_problems(value, go_type[1:], path)
    if go_type.startswith("[]"):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {value!r}"]
        return [p for i, item in enumerate(value) for p in kind_problems(item, go_type[2:], f"{path}[{i}]")]
    if match := re.fullmatch(r"map\[string\](.+)", go_type):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping, got {value!r}"]
        return [p for key, item in value.items() for p in kind_problems(item, match[1], f"{path}.{key}")]
    if go_type in structs:
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping, got {value!r}"]
        fields = dict(structs[go_type])
        for inline in [name for name in fields if name.startswith("<inline>")]:
            fields.update(structs[fields.pop(inline)])
        problems = [
            f"{where}: unknown field {key!r} (kind {go_type} has {sorted(fields)})"
            for key in value
            if key not in fields
        ]
        return problems + [
            p
            for key, item in value.items()
            if key in fields
            for p in kind_problems(item, fields[key], f"{path}.{key}".lstrip("."))
        ]
    if go_type in aliases:
        if not isinstance(value, str) or (aliases[go_type] and value not in aliases[go_type]):
            return [f"{where}: {value!r} is not one of {aliases[go_type]}"]
        return []
    expected = {"string": str, "bool": bool, "int32": int}[go_type]
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        return [f"{where}: expected {go_type}, got {value!r}"]
    return []


def load_kind_config(path: Path) -> dict[str, Any]:
    """A kind configuration, with the apiVersion and kind kind's loader requires."""
    config = yaml.safe_load(path.read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4" and config["kind"] == "Cluster"
    return config


def test_kind_types_are_read_from_kinds_source():
    structs, aliases = kind_types()
    assert {"Cluster", "Node", "Mount", "Networking", "PortMapping", "PatchJSON6902"} <= set(structs)
    assert structs["Node"]["extraMounts"] == "[]Mount" and structs["Node"]["labels"] == "map[string]string"
    assert aliases["NodeRole"] == ["control-plane", "worker"]


@pytest.mark.parametrize("mode", sorted(KIND_CONFIGS))
def test_kind_configuration_decodes_strictly_into_kinds_v1alpha4_types(mode):
    assert kind_problems(load_kind_config(KIND_CONFIGS[mode])) == []


def test_the_kind_check_rejects_what_kind_rejects():
    config = load_kind_config(KIND_CONFIGS["gpu"])
    gpu_node = next(node for node in config["nodes"] if node.get("extraMounts"))
    gpu_node["extraMount"] = gpu_node.pop("extraMounts")
    config["nodes"][0]["role"] = "master"
    config["networking"] = {"apiServerPort": "6443"}
    problems = kind_problems(config)
    assert any("unknown field 'extraMount'" in p for p in problems), problems
    assert any("'master' is not one of" in p for p in problems), problems
    assert any("networking.apiServerPort: expected int32" in p for p in problems), problems


def nodes_of(mode: str, role: str = "worker") -> list[dict[str, Any]]:
    return [node for node in load_kind_config(KIND_CONFIGS[mode])["nodes"] if node["role"] == role]


def taints_of(node: dict[str, Any]) -> list[dict[str, str]]:
    """Taints a kind node gets from its kubeadm JoinConfiguration patches."""
    taints = []
    for text in node.get("kubeadmConfigPatches", []):
        patch = yaml.safe_load(text)
        assert patch["kind"] == "JoinConfiguration", "workers join: only JoinConfiguration applies to them"
        taints += patch["nodeRegistration"]["taints"]
    return taints


def cluster_pods(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return release_pods(objects, NAMESPACE)


def test_the_gpu_pool_takes_the_charts_gpu_workers_and_nothing_else():
    # The chart's default pods as KubeRay builds them, on the nodes kind creates from gpu.yaml.
    objects = objects_of(render_chart({}))
    placements = {p.pod: p.node for p in schedule(cluster_pods(objects), kind_cluster("gpu"))}
    (gpu_node,) = [n.name for n in kind_cluster("gpu").nodes if "nvidia.com/gpu" in n.allocatable]
    assert {pod for pod, node in placements.items() if node == gpu_node} == {"mnist-serve-sim00-gpu-worker-0"}
    (gpu,) = [node for node in nodes_of("gpu") if node.get("extraMounts")]
    assert taints_of(gpu), "untainted, the GPU node would take the head and the CPU workers too"


def test_the_gpu_node_gets_every_gpu_the_nvkind_way_and_a_cpu_worker_stays_free():
    (gpu,) = [node for node in nodes_of("gpu") if node.get("extraMounts")]
    assert gpu["extraMounts"] == [{"hostPath": "/dev/null", "containerPath": "/var/run/nvidia-container-devices/all"}]
    cpu_workers = [node for node in nodes_of("gpu") if not node.get("extraMounts")]
    assert cpu_workers and all(not taints_of(node) and not node.get("labels") for node in cpu_workers)


def test_the_cpu_cluster_has_no_gpu_pool_and_takes_the_cpu_only_scenario():
    assert all(not node.get("labels") and not taints_of(node) for node in nodes_of("cpu"))
    objects = objects_of(render_chart(scenario_values("cpu-only")))
    assert unschedulable(schedule(cluster_pods(objects), kind_cluster("cpu"))) == {}


@pytest.mark.parametrize("mode", sorted(KIND_CONFIGS))
def test_kind_configurations_name_their_cluster_and_leave_the_node_image_to_versions_env(mode):
    config = load_kind_config(KIND_CONFIGS[mode])
    assert config["name"] == f"mnist-serve-{mode}"
    assert all("image" not in node for node in config["nodes"])


def test_the_device_plugin_config_time_slices_nvidia_gpus():
    config = yaml.safe_load((CLUSTER_DIR / "nvidia-device-plugin-config.yaml").read_text())
    assert config["version"] == "v1"
    (resource,) = config["sharing"]["timeSlicing"]["resources"]
    assert resource["name"] == "nvidia.com/gpu" and resource["replicas"] >= 2
    # A blue/green upgrade of the default install holds two GPU worker groups at their maximum.
    assert (
        resource["replicas"]
        >= 2 * VALUES["workerGroups"]["gpu"]["maxReplicas"] * VALUES["workerGroups"]["gpu"]["gpusPerPod"]
    )


@pytest.mark.parametrize("name", ["gpu-check.yaml", "kind/nvidia-runtimeclass.yaml"])
def test_cluster_manifests_validate_against_the_kubernetes_schemas(name):
    obj = yaml.safe_load((CLUSTER_DIR / name).read_text())
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_gpu_check_pod_lands_where_the_charts_gpu_workers_land():
    pod = yaml.safe_load((CLUSTER_DIR / "gpu-check.yaml").read_text())
    cluster = kind_cluster("gpu")
    (placement,) = schedule([pod], cluster)
    worker = next(p for p in cluster_pods(objects_of(render_chart({}))) if "gpu-worker" in p["metadata"]["name"])
    (chart_placement,) = schedule([worker], kind_cluster("gpu"))
    gpu_nodes = [n.name for n in cluster.nodes if "nvidia.com/gpu" in n.allocatable]
    assert placement.node == chart_placement.node and placement.node in gpu_nodes
    assert restricted_violations(pod["spec"]) == []
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    # scripts/gpu-check swaps the image on the one image line.
    text = (CLUSTER_DIR / "gpu-check.yaml").read_text()
    assert len(re.findall(r"^\s*image:", text, re.M)) == 1
    assert container["image"] == f"{VALUES['image']['repository']}:{chart_app_version()}"


def chart_app_version() -> str:
    return yaml.safe_load((REPO_ROOT / "charts" / "mnist-serve" / "Chart.yaml").read_text())["appVersion"]


# --- versions -----------------------------------------------------------------------------------


def test_versions_are_pinned_exactly():
    assert re.fullmatch(r"kindest/node:v\d+\.\d+\.\d+@sha256:[0-9a-f]{64}", VERSIONS["KIND_NODE_IMAGE"])
    for key in ("KIND_VERSION", "KUBECTL_VERSION", "HELM_VERSION", "SKAFFOLD_VERSION"):
        assert re.fullmatch(r"v\d+\.\d+\.\d+", VERSIONS[key]), key
    for key in ("KUBERAY_VERSION", "NVIDIA_DEVICE_PLUGIN_VERSION", "NVIDIA_CONTAINER_TOOLKIT_VERSION"):
        assert re.fullmatch(r"\d+\.\d+\.\d+", VERSIONS[key]), key
    node_minor = re.search(r"node:v(\d+\.\d+)\.", VERSIONS["KIND_NODE_IMAGE"])[1]
    assert VERSIONS["KUBECTL_VERSION"].startswith(f"v{node_minor}."), "kubectl is pinned to the nodes' minor version"
    assert KUBERNETES_VERSION.startswith(f"{node_minor}.")


def test_the_kuberay_version_is_the_one_the_chart_declares():
    chart = yaml.safe_load((REPO_ROOT / "charts" / "mnist-serve" / "Chart.yaml").read_text())
    assert chart["annotations"]["kuberay.io/operator-version"] == VERSIONS["KUBERAY_VERSION"]


def test_scripts_take_versions_only_from_versions_env():
    pinned = {value for key, value in VERSIONS.items() if key.endswith("_VERSION")}
    for script in [*sorted((REPO_ROOT / "scripts").iterdir()), KIND_DIR / "gpu-node-setup.sh"]:
        text = script.read_text()
        for version in pinned:
            assert version not in text, f"{script.name} repeats {version}: use the variable from cluster/versions.env"


def test_the_readme_prerequisites_table_shows_the_pinned_versions():
    readme = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
    section = readme.split("## 0. Prerequisites", 1)[1].split("\n## ", 1)[0]
    for key in ("KIND_VERSION", "KUBECTL_VERSION", "HELM_VERSION", "SKAFFOLD_VERSION", "KUBERAY_VERSION"):
        assert VERSIONS[key].lstrip("v") in section, f"the README's prerequisites do not show {key}"


# --- shell scripts ------------------------------------------------------------------------------


def shell_scripts() -> list[Path]:
    """Every shell script of the repository: scripts/, .ci/, and *.sh files."""
    found = set()
    for folder in ("scripts", ".ci"):
        for path in (REPO_ROOT / folder).iterdir():
            if path.is_file() and (path.suffix == ".sh" or path.read_text().startswith("#!/usr/bin/env bash")):
                found.add(path)
    for path in REPO_ROOT.rglob("*.sh"):
        if not {".venv", "node_modules", ".git"} & set(path.relative_to(REPO_ROOT).parts):
            found.add(path)
    return sorted(found)


def test_every_shell_script_passes_shellcheck():
    scripts = shell_scripts()
    names = {str(path.relative_to(REPO_ROOT)) for path in scripts}
    assert {"scripts/kind-up", "scripts/kind-down", "scripts/e2e", "scripts/test", "scripts/_cluster.sh"} <= names
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck is missing in CI: scripts/test installs it (apt-get install shellcheck)")
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; scripts/test installs it)")
    result = subprocess.run(
        [shellcheck, "--external-sources", *sorted(names)], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the scripts against fake tools ---------------------------------------------------------------

FAKE_TOOL = """#!{python} -S
import os, sys
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
line = " ".join([tool, *args])
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(line + "\\n")
env = os.environ.get
def out(text):
    if text:
        print(text)
if tool == "kind":
    if args[:2] == ["get", "clusters"]:
        out("\\n".join(c for c in env("FAKE_KIND_CLUSTERS", "").split(",") if c))
    elif args[:2] == ["get", "nodes"]:
        name = args[args.index("--name") + 1]
        out("\\n".join([name + "-control-plane", name + "-worker", name + "-worker2"]))
    elif args[:1] == ["version"]:
        out("kind " + env("FAKE_KIND_VERSION", "v0.0.0") + " go1.24 linux/amd64")
elif tool == "docker":
    if args[:1] == ["info"]:
        if env("FAKE_DOCKER_DOWN") == "1":
            sys.exit(1)
        if "--format" in args:
            out(env("FAKE_DOCKER_RUNTIME", "runc"))
    elif args[:2] == ["image", "inspect"]:
        out("sha256:" + env("FAKE_IMAGE_ID", "ab" * 32) if "{{{{.Id}}}}" in args else "2345678901")
elif tool == "kubectl":
    if "gpu.present=true" in line and "-l" in args:
        out(env("FAKE_GPU_NODES", ""))
    elif "allocatable" in line and "jsonpath" in line:
        out(env("FAKE_GPU_ALLOCATABLE", ""))
    elif "{{.status.phase}}" in line:
        out(env("FAKE_POD_PHASE", "Succeeded"))
    elif args[:2] == ["config", "current-context"]:
        out("kind-fake")
    elif "apply" in args and "-" in args:
        with open(os.environ["FAKE_LOG"] + ".stdin", "a") as stdin_log:
            stdin_log.write(sys.stdin.read())
"""
FAKE_TOOLS = ("docker", "kind", "helm", "kubectl", "nvidia-smi", "nvidia-ctk")
UTILITIES = ("bash", "env", "dirname", "basename", "awk", "sed", "grep", "cat", "paste", "sort", "tr", "head",
             "tail", "cut", "sleep", "mktemp", "rm", "id", "uname", "date", "wc")  # fmt: skip


@pytest.fixture
def fake_path(tmp_path: Path) -> Path:
    """A bin directory with the basic utilities the scripts use, and nothing else yet."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in UTILITIES:
        real = shutil.which(name)
        assert real, name
        (bin_dir / name).symlink_to(real)
    return bin_dir


def add_fakes(bin_dir: Path, tools: tuple[str, ...] = FAKE_TOOLS) -> None:
    for tool in tools:
        path = bin_dir / tool
        path.write_text(FAKE_TOOL.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run_script(bin_dir: Path, script: str, *args: str, **env: str) -> tuple[int, str, list[str]]:
    """(exit code, stderr, commands the fake tools received) of ``bash scripts/<script> args``."""
    log = bin_dir.parent / "calls.log"
    log.unlink(missing_ok=True)
    environment = {
        "PATH": str(bin_dir),
        "HOME": str(bin_dir.parent),
        "FAKE_LOG": str(log),
        "MNIST_SERVE_IMAGE_FILE": str(bin_dir.parent / "image"),  # never the repository's .image
        **env,
    }
    result = subprocess.run(
        [str(bin_dir / "bash"), str(REPO_ROOT / "scripts" / script), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result.returncode, result.stderr, calls


def index_of(calls: list[str], prefix: str) -> int:
    matching = [i for i, call in enumerate(calls) if call.startswith(prefix)]
    assert matching, f"no call starting with {prefix!r} in:\n" + "\n".join(calls)
    return matching[0]


@pytest.mark.parametrize(
    ("args", "missing"),
    [((), "docker kind helm kubectl"), (("--gpu",), "docker kind helm kubectl nvidia-smi nvidia-ctk")],
)
def test_kind_up_names_every_missing_prerequisite(fake_path, args, missing):
    code, stderr, calls = run_script(fake_path, "kind-up", *args)
    assert code == 1 and calls == []
    assert f"missing prerequisite(s): {missing}" in stderr
    assert f"kind {VERSIONS['KIND_VERSION']}: https://kind.sigs.k8s.io" in stderr
    assert f"Helm {VERSIONS['HELM_VERSION']}" in stderr and "cluster/versions.env" in stderr


def test_kind_up_stops_when_the_docker_daemon_does_not_answer(fake_path):
    add_fakes(fake_path)
    code, stderr, calls = run_script(fake_path, "kind-up", FAKE_DOCKER_DOWN="1")
    assert code == 1 and "daemon does not answer" in stderr
    assert not any(call.startswith("kind create") for call in calls)


def test_kind_up_gpu_stops_until_docker_hands_gpus_to_kind_nodes(fake_path, tmp_path):
    add_fakes(fake_path)
    config = tmp_path / "config.toml"
    config.write_text("#accept-nvidia-visible-devices-as-volume-mounts = false\n")
    for runtime in ("runc", "nvidia"):
        code, stderr, calls = run_script(
            fake_path, "kind-up", "--gpu", FAKE_DOCKER_RUNTIME=runtime, NVIDIA_RUNTIME_CONFIG=str(config)
        )
        assert code == 1, stderr
        assert "nvidia-ctk runtime configure --runtime=docker --set-as-default --cdi.enabled" in stderr
        assert "accept-nvidia-visible-devices-as-volume-mounts=true" in stderr
        assert not any(call.startswith("kind create") for call in calls)


def test_kind_up_cpu_creates_installs_builds_and_loads_then_reuses(fake_path):
    add_fakes(fake_path)
    code, stderr, calls = run_script(fake_path, "kind-up", FAKE_KIND_VERSION=VERSIONS["KIND_VERSION"])
    assert code == 0, stderr
    repository = VALUES["image"]["repository"]
    image = f"{repository}:{chart_app_version()}-{'ab' * 6}"
    create = index_of(
        calls,
        f"kind create cluster --name mnist-serve-cpu --config {KIND_CONFIGS['cpu']} "
        f"--image {VERSIONS['KIND_NODE_IMAGE']}",
    )
    operator = index_of(
        calls,
        f"helm upgrade --install kuberay-operator kuberay-operator --repo {VERSIONS['KUBERAY_HELM_REPO']} "
        f"--version {VERSIONS['KUBERAY_VERSION']} --namespace {VERSIONS['KUBERAY_NAMESPACE']} --create-namespace "
        "--kube-context kind-mnist-serve-cpu",
    )
    build = index_of(
        calls, f"docker build -f {REPO_ROOT}/docker/Dockerfile --build-arg VARIANT=cpu -t {repository}:build-cpu"
    )
    tag = index_of(calls, f"docker tag {repository}:build-cpu {image}")
    load = index_of(
        calls,
        f"kind load docker-image {image} --name mnist-serve-cpu --nodes mnist-serve-cpu-worker,mnist-serve-cpu-worker2",
    )
    assert create < operator < build < tag < load
    assert not any("nvidia" in call for call in calls)
    assert "warning: kind" not in stderr
    # the install line names the image just built, by its own tag
    cpu_only = "-f charts/mnist-serve/ci/cpu-only-values.yaml"
    image_tag = f"{chart_app_version()}-{'ab' * 6}"
    assert f"helm install mnist-serve charts/mnist-serve {cpu_only} --set image.tag={image_tag}" in stderr

    code, stderr, calls = run_script(fake_path, "kind-up", "--skip-build", FAKE_KIND_CLUSTERS="other,mnist-serve-cpu")
    assert code == 0, stderr
    assert "exists: reusing it" in stderr
    assert not any(call.startswith(("kind create", "docker build", "kind load")) for call in calls)
    index_of(calls, "helm upgrade --install kuberay-operator")
    assert f"warning: kind {VERSIONS['KIND_VERSION']} is pinned" in stderr  # the fake says v0.0.0


def test_kind_up_gpu_sets_up_the_pool_checks_allocatable_gpus_and_runs_the_gpu_check(fake_path, tmp_path):
    add_fakes(fake_path)
    config = tmp_path / "config.toml"
    config.write_text("accept-nvidia-visible-devices-as-volume-mounts = true\n")
    code, stderr, calls = run_script(
        fake_path,
        "kind-up",
        "--gpu",
        FAKE_DOCKER_RUNTIME="nvidia",
        NVIDIA_RUNTIME_CONFIG=str(config),
        FAKE_GPU_NODES="mnist-serve-gpu-worker2",
        FAKE_GPU_ALLOCATABLE="\n4",
    )
    assert code == 0, stderr
    repository = VALUES["image"]["repository"]
    image = f"{repository}:{chart_app_version()}-{'ab' * 6}"
    steps = [
        index_of(calls, f"kind create cluster --name mnist-serve-gpu --config {KIND_CONFIGS['gpu']}"),
        index_of(
            calls,
            f"docker exec -i -e NVIDIA_CONTAINER_TOOLKIT_VERSION={VERSIONS['NVIDIA_CONTAINER_TOOLKIT_VERSION']} "
            "mnist-serve-gpu-worker2 bash -s",
        ),
        index_of(calls, f"kubectl --context kind-mnist-serve-gpu apply -f {KIND_DIR}/nvidia-runtimeclass.yaml"),
        index_of(
            calls,
            f"helm upgrade --install nvidia-device-plugin nvidia-device-plugin --repo "
            f"{VERSIONS['NVIDIA_DEVICE_PLUGIN_HELM_REPO']} --version {VERSIONS['NVIDIA_DEVICE_PLUGIN_VERSION']} "
            f"--namespace {VERSIONS['NVIDIA_DEVICE_PLUGIN_NAMESPACE']} --create-namespace "
            "--set runtimeClassName=nvidia "
            f"--set-file config.map.config={CLUSTER_DIR}/nvidia-device-plugin-config.yaml",
        ),
        index_of(calls, "helm upgrade --install kuberay-operator"),
        index_of(
            calls, f"docker build -f {REPO_ROOT}/docker/Dockerfile --build-arg VARIANT=gpu -t {repository}:build-gpu"
        ),
        index_of(calls, f"docker tag {repository}:build-gpu {image}"),
        index_of(calls, f"kind load docker-image {image} --name mnist-serve-gpu"),
        index_of(calls, "kubectl --context kind-mnist-serve-gpu --namespace default apply -f -"),
    ]
    assert steps == sorted(steps)
    assert "nvidia.com/gpu is allocatable: 4" in stderr and "GPU check passed" in stderr
    applied = yaml.safe_load((tmp_path / "calls.log.stdin").read_text())
    assert applied["metadata"]["name"] == "mnist-serve-gpu-check"
    assert applied["spec"]["containers"][0]["image"] == image


def test_gpu_check_fails_clearly_without_allocatable_gpus_or_when_the_pod_fails(fake_path):
    add_fakes(fake_path)
    code, stderr, calls = run_script(fake_path, "gpu-check", "--context", "somewhere", FAKE_GPU_ALLOCATABLE="")
    assert code == 1 and "no node of somewhere has allocatable nvidia.com/gpu" in stderr
    assert not any(" apply " in call for call in calls)
    code, stderr, _ = run_script(
        fake_path,
        "gpu-check",
        "--image",
        "registry.example.com/mnist-serve:1",
        FAKE_GPU_ALLOCATABLE="1",
        FAKE_POD_PHASE="Failed",
    )
    assert code == 1 and "the GPU check pod failed" in stderr and "kind-fake" in stderr


@pytest.mark.parametrize(
    ("args", "name"), [((), "mnist-serve-cpu"), (("--gpu",), "mnist-serve-gpu"), (("--name", "x"), "x")]
)
def test_kind_down_deletes_only_what_exists(fake_path, args, name):
    add_fakes(fake_path)
    code, stderr, calls = run_script(fake_path, "kind-down", *args, FAKE_KIND_CLUSTERS="")
    assert code == 0 and f"no kind cluster named {name}" in stderr
    assert not any(call.startswith("kind delete") for call in calls)
    code, stderr, calls = run_script(fake_path, "kind-down", *args, FAKE_KIND_CLUSTERS=name)
    assert code == 0, stderr
    assert calls[-1] == f"kind delete cluster --name {name}"


def test_image_tags_each_build_by_its_content_and_loads_it_into_kind(fake_path):
    add_fakes(fake_path)
    repository, version = VALUES["image"]["repository"], chart_app_version()
    last_image = fake_path.parent / "image"
    code, stderr, calls = run_script(fake_path, "image", "--variant", "cpu", FAKE_IMAGE_ID="12" * 32)
    assert code == 0, stderr
    build = (
        f"docker build -f {REPO_ROOT}/docker/Dockerfile --build-arg VARIANT=cpu -t {repository}:build-cpu {REPO_ROOT}"
    )
    assert build in calls
    assert f"docker tag {repository}:build-cpu {repository}:{version}-{'12' * 6}" in calls
    assert last_image.read_text().strip() == f"{repository}:{version}-{'12' * 6}"
    assert "2345 MB uncompressed" in stderr and f"--set image.tag={version}-{'12' * 6}" in stderr
    # another content, another tag: a helm upgrade with it rolls the new image out
    run_script(fake_path, "image", "--variant", "cpu", FAKE_IMAGE_ID="34" * 32)
    assert last_image.read_text().strip() == f"{repository}:{version}-{'34' * 6}"

    code, stderr, calls = run_script(fake_path, "image", "--kind", "mnist-serve-cpu", FAKE_KIND_CLUSTERS="")
    assert code == 1 and "no kind cluster named mnist-serve-cpu" in stderr
    code, stderr, calls = run_script(
        fake_path,
        "image",
        "--kind",
        "k",
        "--repository",
        "reg.example/ml/mnist-serve",
        "--push",
        FAKE_KIND_CLUSTERS="k",
    )
    assert code == 0, stderr
    ref = f"reg.example/ml/mnist-serve:{version}-{'ab' * 6}"
    assert f"kind load docker-image {ref} --name k --nodes k-worker,k-worker2" in calls
    assert f"docker push {ref}" in calls
    code, stderr, _ = run_script(fake_path, "image", "--variant", "tpu")
    assert code == 1 and "--variant is cpu or gpu" in stderr


def test_scripts_refuse_unknown_arguments(fake_path):
    add_fakes(fake_path)
    for script in ("kind-up", "kind-down", "gpu-check", "image"):
        code, stderr, calls = run_script(fake_path, script, "--frobnicate")
        assert code == 1 and "unknown argument: --frobnicate" in stderr and calls == [], script
