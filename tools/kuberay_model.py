"""What the KubeRay 1.7.0 operator makes of a rendered RayService: pods, `ray start` commands, Services.

A model of the operator's own code, small enough to test without a Kubernetes API server, used by
the chart tests (every rendered scenario as the pods KubeRay would create), by the multi-node test
layer (:mod:`tools.multinode`, which starts those pods as real Ray nodes) and by the upgrade
classification of the chart's values. Each function names the KubeRay source it follows
(github.com/ray-project/kuberay, tag v1.7.0, ray-operator/controllers/ray/):

* ``common/pod.go``: ``DefaultHeadPodTemplate``, ``DefaultWorkerPodTemplate``, ``BuildPod``,
  ``setMissingRayStartParams``, ``generateRayStartCommand``, ``addWellKnownAcceleratorResources``,
  ``convertParamMap``, ``setContainerEnvVars``, ``configureGCSFaultTolerance``,
  ``SetContainerTokenAuthEnvVars``, ``addEmptyDir`` / ``makeEmptyDirVolume`` (the /dev/shm volume,
  the head's ``ray-logs`` volume shared with the autoscaler), ``initLivenessAndReadinessProbe``,
  ``BuildAutoscalerContainer`` / ``mergeAutoscalerOverrides``, ``labelPod``;
* ``common/service.go``: ``BuildServeService`` (which ports the serve Service carries);
* ``utils/util.go``: ``GenerateHashWithoutReplicasAndWorkersToDelete`` (what makes a new cluster).

Only what the chart uses is modelled (no TLS, no history-server collector, no multi-host groups,
no embedded GCS storage); :func:`build_pods` refuses specs that use what is not modelled rather
than getting them wrong. ``tests/kube`` compares these pods with the ones the real operator
creates on the local control plane (``tools/kube_local``), field by field.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

KUBERAY_VERSION = "1.7.0"
#: The Ray container is the first container of every Ray pod template (utils.RayContainerIndex).
RAY_CONTAINER = 0
DEFAULT_GCS_PORT = 6379
DEFAULT_METRICS_PORT = 8080
DEFAULT_DASHBOARD_AGENT_LISTEN_PORT = 52365
#: common/pod.go RayLogVolumeName / RayLogVolumeMountPath.
RAY_LOG_VOLUME, RAY_LOG_MOUNT_PATH = "ray-logs", "/tmp/ray"
WORKER_GCS_RECONNECT_TIMEOUT_S = "600"  # utils.DefaultWorkerRayGcsReconnectTimeoutS
#: Ray 2.60's default object store: this share of the memory Ray finds (the pod's limit), capped by
#: 95 % of /dev/shm (ray/_private/utils.py: resolve_object_store_memory).
RAY_OBJECT_STORE_SHARE = 0.3
RAY_OBJECT_STORE_SHM_SHARE = 0.95
#: utils.IsGPUResourceKey: resource names KubeRay reads as GPUs.
GPU_RESOURCE = re.compile(r"^[a-z0-9.\-]+/gpu$")
#: common/pod.go customAcceleratorToRayResourceMap (the accelerators other than GPUs).
CUSTOM_ACCELERATORS = {"google.com/tpu": "TPU", "aws.amazon.com/neuroncore": "neuron_cores", "habana.ai/gaudi": "HPU"}

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([a-zA-Z]*)$")
_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
}


class UnsupportedSpecError(ValueError):
    """The RayService uses a KubeRay feature this model does not cover."""


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity ("500m", "3Gi", 2) as a number."""
    match = _QUANTITY.match(str(value).strip())
    if match is None or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]


def quantity_value(value: str | int | float) -> int:
    """``resource.Quantity.Value()``: the quantity rounded up to an integer ("500m" -> 1)."""
    return math.ceil(parse_quantity(value))


# ---------------------------------------------------------------------------------------------
# ray start parameters
# ---------------------------------------------------------------------------------------------


def complete_start_params(
    params: dict[str, str], node_type: str, head_address: str, resources: dict[str, Any]
) -> dict[str, str]:
    """``setMissingRayStartParams`` then ``generateRayStartCommand``'s additions, on a copy.

    ``head_address`` is ``<fqdn of the head Service>:<gcs port>`` (workers only); ``resources``
    the Ray container's ``resources`` (limits first, then requests, as KubeRay reads them).
    """
    params = dict(params)
    if node_type == "worker":
        params.setdefault("address", head_address)
    else:
        params.setdefault("dashboard-host", "0.0.0.0")
    params.setdefault("metrics-export-port", str(DEFAULT_METRICS_PORT))
    params["block"] = "true"
    params.setdefault("dashboard-agent-listen-port", str(DEFAULT_DASHBOARD_AGENT_LISTEN_PORT))
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    if "num-cpus" not in params:
        cpu = limits.get("cpu") or requests.get("cpu")
        if cpu is not None and parse_quantity(cpu) != 0:
            params["num-cpus"] = str(quantity_value(cpu))
    if "memory" not in params and limits.get("memory") is not None and parse_quantity(limits["memory"]) != 0:
        params["memory"] = str(quantity_value(limits["memory"]))
    _add_accelerators(params, limits)
    return params


def _add_accelerators(params: dict[str, str], limits: dict[str, Any]) -> None:
    """``addWellKnownAcceleratorResources``: num-gpus from a ``*/gpu`` limit, one custom accelerator."""
    resources_map = _resources_map(params)
    custom_added = any(name in resources_map for name in CUSTOM_ACCELERATORS.values())
    for key in sorted(limits):
        value = limits[key]
        if "num-gpus" not in params and GPU_RESOURCE.match(key) and parse_quantity(value) != 0:
            params["num-gpus"] = str(quantity_value(value))
        if not custom_added and key in CUSTOM_ACCELERATORS and parse_quantity(value) != 0:
            if CUSTOM_ACCELERATORS[key] not in resources_map:
                resources_map[CUSTOM_ACCELERATORS[key]] = float(parse_quantity(value))
                params["resources"] = f"'{json.dumps(resources_map, separators=(',', ':'))}'"
            custom_added = True


def _resources_map(params: dict[str, str]) -> dict[str, float]:
    """``getResourcesMap``: the JSON of ``resources``, quotes trimmed."""
    text = params.get("resources")
    return dict(json.loads(text.strip("'\"` "))) if text else {}


def ray_start_command(node_type: str, params: dict[str, str]) -> str:
    """``generateRayStartCommand`` + ``convertParamMap``: sorted flags, booleans as bare switches."""
    keep_false = {"log-color", "include-dashboard", "include-log-monitor"}
    flags = []
    for key in sorted(params):
        value = params[key]
        if value.lower() in ("true", "false") and key not in keep_false:
            if value.lower() == "true":
                flags.append(f" --{key} ")
        else:
            flags.append(f" --{key}={value} ")
    prefix = "ray start --head" if node_type == "head" else "ray start"
    return f"{prefix} {''.join(flags)}"


def container_args(start_command: str) -> list[str]:
    """``BuildPod``: the Ray container runs ``/bin/bash -c -- "ulimit ...; ray start ..."``."""
    return ["/bin/bash", "-c", "--", f"ulimit -n ${{RAY_START_ULIMIT_OPEN_FILES:-65536}}; {start_command}"]


# ---------------------------------------------------------------------------------------------
# pods
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RayPod:
    """One pod the operator creates: its group, the whole Pod object, its ``ray start`` parameters."""

    name: str
    group: str  # "headgroup" for the head, else the worker group's name
    node_type: str  # "head" or "worker"
    pod: dict[str, Any]
    start_params: dict[str, str]
    start_command: str

    @property
    def ray_container(self) -> dict[str, Any]:
        """The Ray container (the first one)."""
        return self.pod["spec"]["containers"][RAY_CONTAINER]

    @property
    def labels(self) -> dict[str, str]:
        """The pod's labels, KubeRay's included."""
        return self.pod["metadata"]["labels"]

    @property
    def shm_bytes(self) -> int | None:
        """Size limit of the /dev/shm volume (None: unlimited or no volume)."""
        return shm_size_bytes(self.pod)

    @property
    def memory_limit_bytes(self) -> int | None:
        """The Ray container's memory limit, in bytes."""
        limit = (self.ray_container.get("resources", {}).get("limits") or {}).get("memory")
        return None if limit is None else quantity_value(limit)


@dataclass(frozen=True)
class ClusterNames:
    """The names KubeRay derives for the RayCluster of a RayService."""

    rayservice: str
    namespace: str
    cluster: str = field(default="")

    @property
    def cluster_name(self) -> str:
        """``GenerateRayClusterName``: ``<rayservice>-<5 random characters>`` (fixed here)."""
        return self.cluster or f"{self.rayservice}-sim00"

    @property
    def head_service_fqdn(self) -> str:
        """``GenerateFQDNServiceName``: the RayCluster's head Service, which workers dial."""
        return f"{self.cluster_name}-head-svc.{self.namespace}.svc.cluster.local"


def _check_supported(spec: dict[str, Any]) -> None:
    cluster = spec["rayClusterConfig"]
    unsupported = [key for key in ("tlsOptions", "historyServerOptions") if cluster.get(key)]
    options = cluster.get("gcsFaultToleranceOptions") or {}
    if options.get("backend") not in (None, "", "redis"):
        unsupported.append("gcsFaultToleranceOptions.backend")
    if (cluster.get("authOptions") or {}).get("mode") not in (None, "token", "disabled"):
        unsupported.append("authOptions.mode")
    for group in cluster.get("workerGroupSpecs") or []:
        if int(group.get("numOfHosts", 1)) != 1:
            unsupported.append(f"workerGroupSpecs[{group['groupName']}].numOfHosts")
    if unsupported:
        raise UnsupportedSpecError(f"not modelled: {', '.join(unsupported)}")


def _env(container: dict[str, Any]) -> list[dict[str, Any]]:
    return container.setdefault("env", [])


def _has_env(container: dict[str, Any], name: str) -> bool:
    return any(item["name"] == name for item in container.get("env") or [])


def _add_env(container: dict[str, Any], name: str, value: str | None = None, **source: Any) -> None:
    item: dict[str, Any] = {"name": name}
    if value is not None:
        item["value"] = value
    if source:
        item["valueFrom"] = source
    _env(container).append(item)


def _field_ref(path: str) -> dict[str, Any]:
    return {"fieldRef": {"fieldPath": path}}


def autoscaling_v2(cluster: dict[str, Any]) -> bool:
    """``IsAutoscalingEnabled`` and ``IsAutoscalingV2Enabled``: the sidecar, with version v2."""
    return (
        bool(cluster.get("enableInTreeAutoscaling")) and (cluster.get("autoscalerOptions") or {}).get("version") == "v2"
    )


def _configure_token_auth(cluster: dict[str, Any], cluster_name: str, container: dict[str, Any]) -> None:
    """``SetContainerTokenAuthEnvVars`` (token mode with a Secret)."""
    auth = cluster.get("authOptions") or {}
    if auth.get("mode") != "token":
        return
    if not _has_env(container, "RAY_AUTH_MODE"):
        _add_env(container, "RAY_AUTH_MODE", "token")
    if not _has_env(container, "RAY_AUTH_TOKEN"):
        secret = auth.get("secretName") or cluster_name
        _add_env(container, "RAY_AUTH_TOKEN", secretKeyRef={"name": secret, "key": "auth_token"})


def _configure_gcs_ft(
    spec: dict[str, Any], template: dict[str, Any], params: dict[str, str], node_type: str, storage_namespace: str
) -> None:
    """``configureGCSFaultTolerance`` + ``configureRedisFT`` (the Redis backend)."""
    options = spec["rayClusterConfig"].get("gcsFaultToleranceOptions")
    annotations = template.setdefault("metadata", {}).setdefault("annotations", {})
    if node_type == "head":
        annotations["ray.io/ft-enabled"] = "true" if options is not None else "false"
    if options is None:
        return
    container = template["spec"]["containers"][RAY_CONTAINER]
    if node_type == "worker":
        if not _has_env(container, "RAY_gcs_rpc_server_reconnect_timeout_s"):
            _add_env(container, "RAY_gcs_rpc_server_reconnect_timeout_s", WORKER_GCS_RECONNECT_TIMEOUT_S)
        return
    namespace = options.get("externalStorageNamespace") or storage_namespace
    annotations["ray.io/external-storage-namespace"] = namespace
    if not _has_env(container, "RAY_external_storage_namespace"):
        _add_env(container, "RAY_external_storage_namespace", namespace)
    _add_env(container, "RAY_REDIS_ADDRESS", options["redisAddress"])
    for key, env_name, param in (
        ("redisUsername", "REDIS_USERNAME", "redis-username"),
        ("redisPassword", "REDIS_PASSWORD", "redis-password"),
    ):
        if options.get(key) is not None:
            params[param] = f"${env_name}"
            source = options[key]
            item: dict[str, Any] = {"name": env_name}
            if "value" in source:
                item["value"] = source["value"]
            if "valueFrom" in source:
                item["valueFrom"] = source["valueFrom"]
            _env(container).append(item)


def autoscaler_container(cluster: dict[str, Any], image: str, cluster_name: str) -> dict[str, Any]:
    """``BuildAutoscalerContainer`` + token auth + ``mergeAutoscalerOverrides``."""
    command = "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"
    container: dict[str, Any] = {
        "name": "autoscaler",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": "RAY_CLUSTER_NAME", "valueFrom": _field_ref("metadata.labels['ray.io/cluster']")},
            {"name": "RAY_CLUSTER_NAMESPACE", "valueFrom": _field_ref("metadata.namespace")},
            {"name": "RAY_HEAD_POD_NAME", "valueFrom": _field_ref("metadata.name")},
            {"name": "KUBERAY_CRD_VER", "value": "v1"},
            {"name": "KUBERAY_GEN_AUTOSCALER_START_CMD", "value": command},
        ],
        "command": ["/bin/bash", "-c", "--"],
        "args": [command],
        "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "500m", "memory": "512Mi"}},
    }
    _configure_token_auth(cluster, cluster_name, container)
    options = cluster.get("autoscalerOptions") or {}
    for key in ("resources", "image", "imagePullPolicy", "securityContext", "command", "args"):
        if options.get(key):
            container[key] = copy.deepcopy(options[key])
    for key in ("env", "envFrom", "volumeMounts"):
        if options.get(key):
            container.setdefault(key, []).extend(copy.deepcopy(options[key]))
    return container


def _wait_gcs_init_container(ray_container: dict[str, Any], head_fqdn: str) -> dict[str, Any]:
    """``DefaultWorkerPodTemplate``'s ``wait-gcs-ready`` init container (its script abridged)."""
    return {
        "name": "wait-gcs-ready",
        "image": ray_container["image"],
        "imagePullPolicy": ray_container.get("imagePullPolicy"),
        "command": ["/bin/bash", "-c", "--"],
        "args": [f"until ray health-check --address {head_fqdn}:{DEFAULT_GCS_PORT} >/dev/null 2>&1; do sleep 5; done"],
        "securityContext": copy.deepcopy(ray_container.get("securityContext")),
        "env": [
            *copy.deepcopy(ray_container.get("env") or []),
            {"name": "FQ_RAY_IP", "value": head_fqdn},
            {"name": "RAY_IP", "value": head_fqdn.split(".")[0]},
        ],
        "volumeMounts": copy.deepcopy(ray_container.get("volumeMounts") or []),
        "resources": {"limits": {"cpu": "200m", "memory": "256Mi"}, "requests": {"cpu": "200m", "memory": "256Mi"}},
    }


def _add_shm_volume(pod: dict[str, Any], params: dict[str, str]) -> None:
    """``BuildPod``'s /dev/shm: an emptyDir (Memory) sized to the memory limit, or request, unless mounted."""
    if "plasma-directory" in params:
        return
    container = pod["spec"]["containers"][RAY_CONTAINER]
    mounts = container.setdefault("volumeMounts", [])
    if any(mount["mountPath"] == "/dev/shm" for mount in mounts):
        return
    volumes = pod["spec"].setdefault("volumes", [])
    if not any(volume["name"] == "shared-mem" for volume in volumes):
        resources = container.get("resources") or {}
        size = (resources.get("limits") or {}).get("memory") or (resources.get("requests") or {}).get("memory")
        empty_dir: dict[str, Any] = {"medium": "Memory"}
        if size is not None:
            empty_dir["sizeLimit"] = size
        volumes.append({"name": "shared-mem", "emptyDir": empty_dir})
    mounts.append({"mountPath": "/dev/shm", "name": "shared-mem", "readOnly": False})


def _add_log_volume(pod: dict[str, Any]) -> None:
    """``BuildPod``'s ``ray-logs`` emptyDir at /tmp/ray, shared by a head and its autoscaler sidecar."""
    volumes = pod["spec"].setdefault("volumes", [])
    containers = [c for c in pod["spec"]["containers"] if c["name"] == "autoscaler"]
    for container in [pod["spec"]["containers"][RAY_CONTAINER], *containers]:
        mounts = container.setdefault("volumeMounts", [])
        if any(mount["mountPath"] == RAY_LOG_MOUNT_PATH for mount in mounts):
            continue
        if not any(volume["name"] == RAY_LOG_VOLUME for volume in volumes):
            volumes.append({"name": RAY_LOG_VOLUME, "emptyDir": {}})
        mounts.append({"mountPath": RAY_LOG_MOUNT_PATH, "name": RAY_LOG_VOLUME, "readOnly": False})


def _wget_health(timeout_s: int, port: int, path: str) -> str:
    """``utils.BaseWgetHealthCommand``."""
    return f"wget --tries 1 -T {timeout_s} -q -O- http://localhost:{port}/{path} | grep success"


def _init_probes(container: dict[str, Any], node_type: str, params: dict[str, str]) -> None:
    """``initLivenessAndReadinessProbe`` for Ray >= 2.53 in a RayService (probes the user left unset).

    Liveness and readiness ask the dashboard agent's ``/api/healthz``; a RayService worker's
    readiness instead runs the raylet's and the Serve proxy's health checks with ``wget``, and one
    failure takes the pod out of the serve Service. ``scheme: HTTP`` is the API server's default.
    """
    head = node_type == "head"
    agent = int(params.get("dashboard-agent-listen-port", DEFAULT_DASHBOARD_AGENT_LISTEN_PORT))
    http = {"path": "/api/healthz", "port": agent, "scheme": "HTTP"}
    timeout = 5 if head else 2
    if "livenessProbe" not in container:
        container["livenessProbe"] = {
            "httpGet": http, "initialDelaySeconds": 30, "timeoutSeconds": timeout,
            "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 120,
        }  # fmt: skip
    if "readinessProbe" in container:
        return
    probe: dict[str, Any] = {
        "initialDelaySeconds": 10, "timeoutSeconds": timeout, "periodSeconds": 5, "successThreshold": 1,
    }  # fmt: skip
    if head:
        probe |= {"httpGet": http, "failureThreshold": 10}
    else:
        serve = next((p["containerPort"] for p in container.get("ports") or [] if p.get("name") == "serve"), 8000)
        checks = [_wget_health(2, agent, "api/local_raylet_healthz"), _wget_health(10, int(serve), "-/healthz")]
        probe |= {"exec": {"command": ["bash", "-c", " && ".join(checks)]}, "failureThreshold": 1}
    container["readinessProbe"] = probe


def readiness_urls(container: dict[str, Any]) -> list[tuple[int, str]]:
    """(port, path) of each health URL a worker's exec readiness probe asks for "success"."""
    command = " ".join((container.get("readinessProbe") or {}).get("exec", {}).get("command") or [])
    return [(int(port), "/" + path) for port, path in re.findall(r"http://localhost:(\d+)/(\S+)", command)]


def shm_size_bytes(pod: dict[str, Any]) -> int | None:
    """The size limit of the volume mounted at /dev/shm in the Ray container (None: none or unlimited)."""
    container = pod["spec"]["containers"][RAY_CONTAINER]
    names = [mount["name"] for mount in container.get("volumeMounts") or [] if mount["mountPath"] == "/dev/shm"]
    for volume in pod["spec"].get("volumes") or []:
        if names and volume["name"] == names[0]:
            limit = (volume.get("emptyDir") or {}).get("sizeLimit")
            return None if limit is None else quantity_value(limit)
    return None


#: ray_constants: the object store's hard cap, and the size above which a too small /dev/shm is an error.
RAY_OBJECT_STORE_MAX_BYTES = 200 * 10**9
RAY_REQUIRE_SHM_SIZE_THRESHOLD = 10**10
#: A container's /dev/shm without a volume (the container runtime's default).
CONTAINER_DEFAULT_SHM_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ObjectStore:
    """Where and how large Ray 2.60 makes a node's object store."""

    bytes: int
    directory: str  # "/dev/shm", or "/tmp" when /dev/shm is too small (slow: disk-backed)


def object_store_of(pod: RayPod) -> ObjectStore:
    """Ray 2.60's default object store in this pod.

    As ``resolve_object_store_memory`` and ``services.determine_plasma_store_config`` size it:
    30 % of the memory Ray finds (the pod's limit), capped at 200 GB and at 95 % of /dev/shm
    unless that is under 10**10 bytes; in /dev/shm when it fits, else in /tmp (with a warning)
    when under 10**10 bytes.
    """
    memory = pod.memory_limit_bytes
    if memory is None:
        raise ValueError(f"pod {pod.name} has no memory limit: Ray would size the object store from the node")
    shm = pod.shm_bytes if pod.shm_bytes is not None else CONTAINER_DEFAULT_SHM_BYTES
    cap = min(RAY_OBJECT_STORE_MAX_BYTES, max(RAY_REQUIRE_SHM_SIZE_THRESHOLD, int(shm * RAY_OBJECT_STORE_SHM_SHARE)))
    size = min(int(memory * RAY_OBJECT_STORE_SHARE), cap)
    if shm >= size:
        return ObjectStore(size, "/dev/shm")
    if size > RAY_REQUIRE_SHM_SIZE_THRESHOLD:
        raise ValueError(f"pod {pod.name}: Ray refuses an object store of {size} bytes with /dev/shm of {shm}")
    return ObjectStore(size, "/tmp")


def _set_container_env(container: dict[str, Any], node_type: str, names: ClusterNames, command: str) -> None:
    """``setContainerEnvVars`` for a RayService's pods."""
    head_port = str(DEFAULT_GCS_PORT)
    ip = "127.0.0.1"
    if node_type == "worker":
        ip = names.head_service_fqdn
        _add_env(container, "FQ_RAY_IP", ip)
        _add_env(container, "RAY_IP", ip.split(".")[0])
    _add_env(container, "RAY_CLUSTER_NAME", **_field_ref("metadata.labels['ray.io/cluster']"))
    _add_env(container, "RAY_CLUSTER_NAMESPACE", **_field_ref("metadata.namespace"))
    _add_env(container, "RAY_CLOUD_INSTANCE_ID", **_field_ref("metadata.name"))
    _add_env(container, "RAY_NODE_TYPE_NAME", **_field_ref("metadata.labels['ray.io/group']"))
    _add_env(container, "KUBERAY_GEN_RAY_START_CMD", command)
    defaults = {
        "RAY_PORT": head_port,
        "RAY_timeout_ms_task_wait_for_death_info": "0",
        "RAY_gcs_server_request_timeout_seconds": "5",
        "RAY_SERVE_KV_TIMEOUT_S": "5",
        "RAY_ADDRESS": f"{ip}:{head_port}",
        "RAY_USAGE_STATS_KUBERAY_IN_USE": "1",
    }
    for name, value in defaults.items():
        if not _has_env(container, name):
            _add_env(container, name, value)
    if node_type == "head":
        _add_env(container, "RAY_USAGE_STATS_EXTRA_TAGS", f"kuberay_version=v{KUBERAY_VERSION};kuberay_crd=RayService")
    if not _has_env(container, "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE"):
        _add_env(container, "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "1")


def _label_pod(node_type: str, cluster_name: str, group: str, template_labels: dict[str, str]) -> dict[str, str]:
    """``labelPod`` + ``BuildPod``'s ray.io/serve (true on workers, false on the head at first)."""
    labels = {
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": cluster_name,
        "ray.io/node-type": node_type,
        "ray.io/group": group,
        "ray.io/identifier": f"{cluster_name}-{node_type}",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    labels |= {
        k: v for k, v in template_labels.items() if k not in ("ray.io/node-type", "ray.io/group", "ray.io/cluster")
    }
    labels["ray.io/serve"] = "true" if node_type == "worker" else "false"
    return labels


def build_pod(
    spec: dict[str, Any], names: ClusterNames, group: dict[str, Any] | None, index: int = 0, storage_namespace: str = ""
) -> RayPod:
    """One pod as the operator builds it: the head for ``group=None``, else replica ``index`` of a worker group."""
    cluster = spec["rayClusterConfig"]
    node_type = "head" if group is None else "worker"
    group_spec = cluster["headGroupSpec"] if group is None else group
    group_name = "headgroup" if group is None else group["groupName"]
    template = copy.deepcopy(group_spec["template"])
    params = {str(k): str(v) for k, v in (group_spec.get("rayStartParams") or {}).items()}
    if group_spec.get("resources") or group_spec.get("labels"):
        raise UnsupportedSpecError("the group-level resources/labels fields are not modelled")
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = _label_pod(node_type, names.cluster_name, group_name, metadata.get("labels") or {})
    pod_spec = template["spec"]
    container = pod_spec["containers"][RAY_CONTAINER]
    v2 = autoscaling_v2(cluster)
    if node_type == "head" and cluster.get("enableInTreeAutoscaling"):
        params["no-monitor"] = "true"
        pod_spec["serviceAccountName"] = names.cluster_name
        pod_spec["containers"].append(autoscaler_container(cluster, container["image"], names.cluster_name))
        _add_env(container, "RAY_enable_autoscaler_v2", "true" if v2 else "false")
    if node_type == "worker":
        pod_spec.setdefault("initContainers", []).append(_wait_gcs_init_container(container, names.head_service_fqdn))
    _configure_gcs_ft(spec, template, params, node_type, storage_namespace or names.cluster_name)
    if not any(port.get("name") == "metrics" for port in container.get("ports") or []):
        container.setdefault("ports", []).append({"name": "metrics", "containerPort": DEFAULT_METRICS_PORT})
    if v2:
        pod_spec["restartPolicy"] = "Never"
    _configure_token_auth(cluster, names.cluster_name, container)
    for init in pod_spec.get("initContainers") or []:
        if init["name"] == "wait-gcs-ready":
            _configure_token_auth(cluster, names.cluster_name, init)
    params = complete_start_params(
        params, node_type, f"{names.head_service_fqdn}:{DEFAULT_GCS_PORT}", container.get("resources") or {}
    )
    command = ray_start_command(node_type, params)
    name = f"{names.cluster_name}-{'head' if group is None else group_name + '-worker'}-{index}"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {**metadata, "name": name}, "spec": pod_spec}
    _add_shm_volume(pod, params)
    if node_type == "head" and cluster.get("enableInTreeAutoscaling"):
        _add_log_volume(pod)
    _init_probes(container, node_type, params)
    if "ray start" not in " ".join(container.get("command") or []) + " ".join(container.get("args") or []):
        args = container_args(command)
        container["command"], container["args"] = args[:3], args[3:]
    _set_container_env(container, node_type, names, command)
    return RayPod(name, group_name, node_type, pod, params, command)


def build_pods(
    rayservice: dict[str, Any],
    namespace: str = "default",
    replicas: dict[str, int] | None = None,
    cluster_name: str = "",
) -> list[RayPod]:
    """Every pod of the RayService's cluster: the head, then each worker group's ``replicas`` pods.

    ``replicas`` maps a group name to a pod count (default: the group's ``replicas``, as the
    operator creates them before the autoscaler acts).
    """
    spec = rayservice["spec"]
    _check_supported(spec)
    names = ClusterNames(rayservice["metadata"]["name"], namespace, cluster_name)
    pods = [build_pod(spec, names, None)]
    for group in spec["rayClusterConfig"].get("workerGroupSpecs") or []:
        count = (replicas or {}).get(group["groupName"], int(group.get("replicas", group.get("minReplicas", 0))))
        pods += [build_pod(spec, names, group, index) for index in range(count)]
    return pods


# ---------------------------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------------------------


def serve_service(rayservice: dict[str, Any], namespace: str = "default", cluster_name: str = "") -> dict[str, Any]:
    """``BuildServeService`` for a RayService: the Service KubeRay creates for Serve.

    The head container's ``serve``/``serve-*`` ports, merged by name with ``spec.serveService``'s,
    selecting the active cluster's pods labelled ray.io/serve=true.
    """
    spec = rayservice["spec"]
    names = ClusterNames(rayservice["metadata"]["name"], namespace, cluster_name)
    head = spec["rayClusterConfig"]["headGroupSpec"]
    ports_by_name = {
        port["name"]: port["containerPort"]
        for port in head["template"]["spec"]["containers"][RAY_CONTAINER].get("ports") or []
        if port.get("name")
    }
    auto = [{"name": n, "port": p} for n, p in ports_by_name.items() if n == "serve" or n.startswith("serve-")]
    custom = copy.deepcopy(spec.get("serveService")) or {}
    user_ports = {port["name"]: port for port in (custom.get("spec") or {}).get("ports") or []}
    if not auto and not custom:
        raise ValueError("no head container port named 'serve' or 'serve-*': KubeRay creates no serve Service")
    ports = [user_ports.get(port["name"], port) for port in auto] if auto else list(user_ports.values())
    service_spec = custom.get("spec") or {}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{names.rayservice}-serve-svc", "namespace": namespace},
        "spec": {
            **service_spec,
            "selector": {"ray.io/cluster": names.cluster_name, "ray.io/serve": "true"},
            "ports": ports,
            "type": service_spec.get("type") or head.get("serviceType") or "ClusterIP",
        },
    }


# ---------------------------------------------------------------------------------------------
# upgrades
# ---------------------------------------------------------------------------------------------


def hashed_cluster_spec(rayservice: dict[str, Any]) -> dict[str, Any]:
    """``GenerateHashWithoutReplicasAndWorkersToDelete``'s input: the RayClusterSpec with muted fields.

    Muted (a change to them never reaches a running cluster): every worker group's replicas,
    minReplicas, maxReplicas, scaleStrategy.workersToDelete, and every pod template's
    tolerations and schedulingGates; plus ``suspend`` (``rayClusterSpecForHashing``).
    """
    spec = copy.deepcopy(rayservice["spec"]["rayClusterConfig"])
    spec.pop("suspend", None)
    spec.pop("upgradeStrategy", None)
    templates = [spec["headGroupSpec"]["template"]]
    for group in spec.get("workerGroupSpecs") or []:
        for key in ("replicas", "minReplicas", "maxReplicas"):
            group.pop(key, None)
        (group.get("scaleStrategy") or {}).pop("workersToDelete", None)
        templates.append(group["template"])
    for template in templates:
        template.get("spec", {}).pop("tolerations", None)
        template.get("spec", {}).pop("schedulingGates", None)
    return spec


#: Upgrade classes, strongest first (a change that is several things is the strongest of them).
UPGRADE_CLASSES = ("rename", "new-cluster", "not-propagated", "in-place", "rayservice", "chart-objects", "none")


def classify_upgrade(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> str:
    """What ``helm upgrade`` from ``before`` to ``after`` (rendered objects) does to a running release.

    ``rename``: the RayService's name changes; ``new-cluster``: the hashed cluster spec changes;
    ``not-propagated``: only muted cluster fields change; ``in-place``: only serveConfigV2;
    ``rayservice``: other RayService fields (Services, upgrade strategy, metadata);
    ``chart-objects``: only other objects; ``none``: nothing.
    """

    def rayservice_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
        (found,) = [obj for obj in objects if obj.get("kind") == "RayService"]
        return found

    def canonical(value: Any) -> str:
        return json.dumps(value, sort_keys=True)

    old, new = rayservice_of(before), rayservice_of(after)
    if old["metadata"]["name"] != new["metadata"]["name"]:
        return "rename"
    found = []
    if canonical(hashed_cluster_spec(old)) != canonical(hashed_cluster_spec(new)):
        found.append("new-cluster")
    elif canonical(old["spec"]["rayClusterConfig"]) != canonical(new["spec"]["rayClusterConfig"]):
        found.append("not-propagated")
    if canonical(json.loads(old["spec"]["serveConfigV2"])) != canonical(json.loads(new["spec"]["serveConfigV2"])):
        found.append("in-place")
    rest = [
        canonical({k: v for k, v in obj["spec"].items() if k not in ("rayClusterConfig", "serveConfigV2")})
        + canonical(obj["metadata"])
        for obj in (old, new)
    ]
    if rest[0] != rest[1]:
        found.append("rayservice")
    others = [
        sorted(canonical(obj) for obj in objects if obj.get("kind") != "RayService") for objects in (before, after)
    ]
    if others[0] != others[1]:
        found.append("chart-objects")
    return min(found, key=UPGRADE_CLASSES.index) if found else "none"
