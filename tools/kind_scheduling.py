"""Would the pods of a release schedule on the kind clusters of ``cluster/kind/``? A scheduler model.

The kube-scheduler's filters that decide whether our pods can land anywhere, applied to the pods
the chart renders (and the KubeRay operator builds from the RayService, :mod:`tools.kuberay_model`)
against the nodes the kind configurations create:

* node selector labels and required node affinity (``matchExpressions``: In, NotIn, Exists,
  DoesNotExist);
* taints with effect NoSchedule or NoExecute, and the pod's tolerations;
* the pod's RuntimeClass exists in the cluster (kubelet refuses to start it otherwise);
* resource requests (a container's limits where it sets no request, Kubernetes' defaulting),
  summed over containers and against the largest init container, within what is left of the
  node's allocatable;
* required pod affinity with ``kubernetes.io/hostname`` topology (the ``helm test`` pods).

Node capacity: kind nodes are containers that each report the host's CPUs and memory as
allocatable; a GPU node of the nvkind set-up reports the host's GPUs times the device plugin's
time-slicing replicas (``cluster/nvidia-device-plugin-config.yaml``). Placement is first fit in
the given order, on the feasible node with the most free CPU (the default scheduler's
least-allocated scoring, simplified).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from tools.kuberay_model import build_pods, parse_quantity

CLUSTER_DIR = Path(__file__).resolve().parent.parent / "cluster"
KIND_CONFIGS = {"cpu": CLUSTER_DIR / "kind" / "cpu.yaml", "gpu": CLUSTER_DIR / "kind" / "gpu.yaml"}
DEVICE_PLUGIN_CONFIG = CLUSTER_DIR / "nvidia-device-plugin-config.yaml"
#: RuntimeClasses that scripts/kind-up creates in each kind cluster.
KIND_RUNTIME_CLASSES = {"cpu": frozenset(), "gpu": frozenset({"nvidia"})}
#: kind's control-plane taint (kubeadm's default in a cluster with worker nodes).
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
SCHEDULING_EFFECTS = ("NoSchedule", "NoExecute")
RESOURCES = ("cpu", "memory", "nvidia.com/gpu")


@dataclass(frozen=True)
class Host:
    """The machine kind runs on: its CPUs, memory and NVIDIA GPUs."""

    cpus: int = 4
    memory: str = "16Gi"
    gpus: int = 1


#: The smallest workstation the README's kind path is meant for.
WORKSTATION = Host()


@dataclass
class Node:
    """A node as the scheduler sees it."""

    name: str
    labels: dict[str, str]
    taints: list[dict[str, str]]
    allocatable: dict[str, Decimal]
    used: dict[str, Decimal] = field(default_factory=dict)
    pods: list[dict[str, str]] = field(default_factory=list)  # labels of the pods placed here

    def free(self, resource: str) -> Decimal:
        """Allocatable minus what the placed pods request."""
        return self.allocatable.get(resource, Decimal(0)) - self.used.get(resource, Decimal(0))


@dataclass(frozen=True)
class KindCluster:
    """The nodes of one kind configuration and the RuntimeClasses it has."""

    name: str
    nodes: list[Node]
    runtime_classes: frozenset[str]


def time_slicing_replicas(path: Path = DEVICE_PLUGIN_CONFIG) -> int:
    """How many pods the device plugin lets share one GPU."""
    config = yaml.safe_load(path.read_text())
    resources = ((config.get("sharing") or {}).get("timeSlicing") or {}).get("resources") or []
    return max([int(r["replicas"]) for r in resources if r["name"] == "nvidia.com/gpu"] or [1])


def _join_taints(node: dict[str, Any]) -> list[dict[str, str]]:
    taints: list[dict[str, str]] = []
    for text in node.get("kubeadmConfigPatches") or []:
        patch = yaml.safe_load(text)
        if patch.get("kind") == "JoinConfiguration":
            taints += patch.get("nodeRegistration", {}).get("taints") or []
    return taints


def kind_cluster(mode: str, host: Host = WORKSTATION) -> KindCluster:
    """The nodes that ``bash scripts/kind-up`` (``--gpu`` for mode ``gpu``) creates on ``host``."""
    config = yaml.safe_load(KIND_CONFIGS[mode].read_text())
    gpus_per_node = host.gpus * time_slicing_replicas()
    nodes = []
    workers = 0
    for node in config["nodes"]:
        if node["role"] == "control-plane":
            name = f"{config['name']}-control-plane"
        else:  # kind's names: <cluster>-worker, <cluster>-worker2, ...
            workers += 1
            name = f"{config['name']}-worker{workers if workers > 1 else ''}"
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **(node.get("labels") or {})}
        taints = [CONTROL_PLANE_TAINT] if node["role"] == "control-plane" else _join_taints(node)
        allocatable = {"cpu": Decimal(host.cpus), "memory": parse_quantity(host.memory)}
        if any(
            m.get("containerPath", "").startswith("/var/run/nvidia-container-devices")
            for m in node.get("extraMounts") or []
        ):
            allocatable["nvidia.com/gpu"] = Decimal(gpus_per_node)
        nodes.append(Node(name, labels, taints, allocatable))
    return KindCluster(config["name"], nodes, KIND_RUNTIME_CLASSES[mode])


def pod_requests(pod_spec: dict[str, Any]) -> dict[str, Decimal]:
    """What the scheduler reserves for a pod: containers summed, at least the largest init container."""

    def container_requests(container: dict[str, Any]) -> dict[str, Decimal]:
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {name: parse_quantity(merged[name]) for name in RESOURCES if name in merged}

    total: dict[str, Decimal] = {}
    for container in pod_spec.get("containers") or []:
        for name, value in container_requests(container).items():
            total[name] = total.get(name, Decimal(0)) + value
    for init in pod_spec.get("initContainers") or []:
        for name, value in container_requests(init).items():
            total[name] = max(total.get(name, Decimal(0)), value)
    return total


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, str]) -> bool:
    """Kubernetes' rule: some toleration matches the taint's key, value (or Exists) and effect."""
    for toleration in tolerations or []:
        key_ok = toleration.get("key") in (None, "", taint["key"])
        if toleration.get("operator", "Equal") == "Exists":
            value_ok = key_ok
        else:
            value_ok = key_ok and toleration.get("value", "") == taint.get("value", "")
        if value_ok and toleration.get("effect") in (None, "", taint["effect"]):
            return True
    return False


def _expression_matches(labels: dict[str, str], expression: dict[str, Any]) -> bool:
    key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    raise ValueError(f"unsupported operator {operator}")


def selector_matches(labels: dict[str, str], selector: dict[str, Any]) -> bool:
    """A label selector (matchLabels and matchExpressions) against a set of labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(_expression_matches(labels, e) for e in selector.get("matchExpressions") or [])


def why_not(pod_spec: dict[str, Any], node: Node, runtime_classes: frozenset[str]) -> list[str]:
    """Every reason the pod cannot go on the node (empty: it fits)."""
    reasons = []
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if node.labels.get(key) != str(value):
            reasons.append(f"node selector {key}={value} (node has {node.labels.get(key)!r})")
    required = (
        ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms")
    if required and not any(
        all(_expression_matches(node.labels, e) for e in term.get("matchExpressions") or []) for term in required
    ):
        reasons.append("required node affinity")
    for taint in node.taints:
        if taint["effect"] in SCHEDULING_EFFECTS and not tolerates(pod_spec.get("tolerations") or [], taint):
            reasons.append(f"untolerated taint {taint['key']}:{taint['effect']}")
    runtime = pod_spec.get("runtimeClassName")
    if runtime and runtime not in runtime_classes:
        reasons.append(f"RuntimeClass {runtime} does not exist")
    for name, value in pod_requests(pod_spec).items():
        if value > node.free(name):
            reasons.append(f"insufficient {name}: requests {value}, free {node.free(name)}")
    for term in ((pod_spec.get("affinity") or {}).get("podAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or []:
        if term.get("topologyKey") != "kubernetes.io/hostname":
            raise ValueError(f"unsupported topologyKey {term.get('topologyKey')}")
        if not any(selector_matches(labels, term["labelSelector"]) for labels in node.pods):
            reasons.append("required pod affinity: no matching pod on this node")
    return reasons


@dataclass(frozen=True)
class Placement:
    """Where a pod went, or every node's reason to refuse it."""

    pod: str
    node: str | None
    refusals: dict[str, list[str]]


def schedule(pods: list[dict[str, Any]], cluster: KindCluster) -> list[Placement]:
    """Place pods (Pod objects) in order; a pod that fits nowhere is reported with each node's reasons."""
    placements = []
    for pod in pods:
        spec = pod["spec"]
        refusals = {node.name: why_not(spec, node, cluster.runtime_classes) for node in cluster.nodes}
        feasible = [node for node in cluster.nodes if not refusals[node.name]]
        if not feasible:
            placements.append(Placement(pod["metadata"]["name"], None, refusals))
            continue
        chosen = max(feasible, key=lambda node: node.free("cpu"))
        for name, value in pod_requests(spec).items():
            chosen.used[name] = chosen.used.get(name, Decimal(0)) + value
        chosen.pods.append(dict(pod["metadata"].get("labels") or {}))
        placements.append(Placement(pod["metadata"]["name"], chosen.name, {}))
    return placements


def unschedulable(placements: list[Placement]) -> dict[str, dict[str, list[str]]]:
    """Pods no node took, with every node's reasons."""
    return {p.pod: p.refusals for p in placements if p.node is None}


def pods_of_workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods that the chart's own workload objects make (StatefulSet replicas, bare Pods)."""
    pods = []
    for obj in objects:
        if obj.get("kind") == "Pod":
            pods.append(obj)
        elif obj.get("kind") in ("StatefulSet", "Deployment"):
            template = obj["spec"]["template"]
            for index in range(int(obj["spec"].get("replicas", 1))):
                name = f"{obj['metadata']['name']}-{index}"
                pods.append({"metadata": {**template.get("metadata", {}), "name": name}, "spec": template["spec"]})
    return pods


def release_pods(objects: list[dict[str, Any]], namespace: str, cluster_name: str = "") -> list[dict[str, Any]]:
    """Every pod of a rendered release: the Ray pods as KubeRay builds them, then the chart's own."""
    (rayservice,) = [obj for obj in objects if obj.get("kind") == "RayService"]
    ray_pods = [pod.pod for pod in build_pods(rayservice, namespace, cluster_name=cluster_name)]
    return ray_pods + pods_of_workloads(objects)
