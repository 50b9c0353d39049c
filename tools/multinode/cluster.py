"""The rendered RayService as a running multi-node Ray cluster: one Ray node per pod.

:class:`RenderedCluster` takes the objects ``helm template`` renders, builds the pods the KubeRay
1.7.0 operator would create (:func:`tools.kuberay_model.build_pods`: ``ray start`` flags from
``rayStartParams`` and the container's resources, the environment KubeRay adds, /dev/shm sized
from the memory limit), and runs each as a pod (:mod:`tools.multinode.pods`) on a pod network
(:mod:`tools.multinode.network`): first the chart's Redis when it renders one, then the head, then
each worker group's ``replicas`` pods after the ``wait-gcs-ready`` init step. It then deploys
``serveConfigV2`` as the operator does (the config as JSON, ``PUT /api/serve/applications/`` on the
head's dashboard with the token header) and waits until every application is RUNNING.

Where this machine differs from a cluster, the difference is explicit:

* GPUs are faked: a pod whose Ray container requests ``nvidia.com/gpu`` gets the Ray GPUs
  KubeRay derives from it, and ``MNIST_SERVE_SIMULATED_GPUS=1`` so the Classifier runs on the CPU
  instead of refusing to start without CUDA (what it does on a real GPU node without a driver);
* the object store size Ray would find in the pod (30 % of its memory limit) is passed as
  ``--object-store-memory``: here every pod sees the host's memory, not its cgroup's;
* no autoscaler sidecar runs (it needs the Kubernetes API): each group runs ``replicas`` pods;
* a Service is its DNS name in every pod's /etc/hosts, mapped to the pod that backs it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from serve_app.local.dashboard import DashboardClient
from serve_app.model import SIMULATED_GPUS_ENV
from tools.kind_scheduling import pods_of_workloads
from tools.kuberay_model import RayPod, build_pods, object_store_of, readiness_urls
from tools.multinode.network import PodNetwork
from tools.multinode.pods import PodProcess, image_environment, map_image_path, resolve_env, secrets_of

NAMESPACE = "serving"
#: Seconds a pod gets to join the cluster, and the application to reach RUNNING.
POD_START_TIMEOUT_S = 180
DEPLOY_TIMEOUT_S = 600
#: The worker's wait-gcs-ready init container, without its 5 s sleep between tries.
GCS_PROBE_INTERVAL_S = 1.0
#: Starts of one pod before a run gives up on it (each failed start is replaced, as KubeRay does).
MAX_POD_STARTS = 5
#: The head pod's CPU weight (its scheduling group's nice; see :func:`set_session_nice`). The chart
#: requests 7 CPUs over the HA scenario's five Ray pods, 3.5 times what a 2-core machine has, so
#: none gets its request and by default each pod gets an equal share (a third of a core under
#: load). A cluster guarantees the head its 1-CPU request; here nice -7 gives it about half of
#: two busy cores, which is what that request is. It matters for one thing: a head start is
#: bounded by Ray's fixed timeouts (the raylet waits 15 s for its dashboard agent to write its
#: port files, ``ray start`` 30 s for the raylet), and at a third of a core the ten Python processes a
#: head start imports Ray in took 14-20 s before the agent was up (so 3 of 4 starts failed).
HEAD_SESSION_NICE = -7
#: Lines of a pod's output that an error about the pod quotes.
LOG_TAIL_LINES = 12


class PodStartError(RuntimeError):
    """A pod that did not come up: which pod, which start (generation), why, and its last log lines."""

    def __init__(self, pod: PodProcess, what: str) -> None:
        self.pod = pod.name
        self.generation = pod.generation
        tail = log_tail(pod.log_path)
        self.reason = f"{what}; last lines: {tail[-1] if tail else '(no output)'}"
        shown = "\n    ".join(tail) or "(no output)"
        super().__init__(f"pod {pod.name}, start {pod.generation}: {what} (log {pod.log_path}):\n    {shown}")


@dataclass(frozen=True)
class PodStart:
    """One start of a pod: its generation, whether its Ray node joined, after how long, and why not."""

    pod: str
    generation: int
    joined: bool
    seconds: float
    reason: str = ""


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last non-empty lines of a pod's output (Ray's own error is usually the last one)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


@dataclass(frozen=True)
class Replica:
    """One Serve replica and the pod it runs in."""

    deployment: str
    replica_id: str
    pod: str
    state: str


@dataclass
class RenderedCluster:
    """The Ray pods (and the chart's Redis) of one rendered release, on a pod network."""

    objects: list[dict[str, Any]]
    run_dir: Path
    network: PodNetwork = field(default_factory=PodNetwork)
    pods: dict[str, PodProcess] = field(default_factory=dict)
    ray_pods: dict[str, RayPod] = field(default_factory=dict)
    token: str | None = None
    starts: list[PodStart] = field(default_factory=list)

    @property
    def rayservice(self) -> dict[str, Any]:
        """The rendered RayService."""
        (found,) = [obj for obj in self.objects if obj.get("kind") == "RayService"]
        return found

    @property
    def serve_config(self) -> dict[str, Any]:
        """``serveConfigV2``, parsed as the operator parses it."""
        return yaml.safe_load(self.rayservice["spec"]["serveConfigV2"])

    @property
    def head(self) -> str:
        """The head pod's name."""
        return next(name for name, pod in self.ray_pods.items() if pod.node_type == "head")

    def workers(self, group: str | None = None) -> list[str]:
        """Worker pod names, of one group or all."""
        return [n for n, p in self.ray_pods.items() if p.node_type == "worker" and group in (None, p.group)]

    def dashboard(self, timeout_s: float = 30) -> DashboardClient:
        """The head's dashboard, as the operator reaches it (head Service, port 8265, token)."""
        return DashboardClient(
            f"http://{self.network.address_of(self.head)}:8265", token=self.token, timeout_s=timeout_s
        )

    def serve_url(self, pod: str) -> str:
        """The Serve port (8000) of one pod."""
        return f"http://{self.network.address_of(pod)}:8000"

    # ---- building -----------------------------------------------------------------------------

    def _pod_process(self, name: str, pod: dict[str, Any], container: dict[str, Any], shm: int | None) -> PodProcess:
        image = image_environment()
        secrets = secrets_of(self.objects)
        pod = {**pod, "metadata": {**pod["metadata"], "namespace": NAMESPACE}}
        env = {k: map_image_path(v, image) for k, v in image.env.items()}
        env |= resolve_env(container.get("env") or [], pod, secrets)
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        return PodProcess(name, self.network, command, env, map_image_path(image.workdir, image), self.run_dir, shm)

    def _add_redis(self) -> None:
        for pod in pods_of_workloads(self.objects):
            if pod["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "redis":
                continue
            name = pod["metadata"]["name"]
            self.network.add_pod(name)
            container = pod["spec"]["containers"][0]
            process = self._pod_process(name, pod, container, None)
            data = self.run_dir / f"{name}.data"  # its PersistentVolumeClaim
            data.mkdir()
            process.command = [word.replace("--dir /data", f"--dir {data}") for word in process.command]
            process.ports = [int(p["containerPort"]) for p in container.get("ports") or []]
            self.pods[name] = process
            (service,) = [
                o for o in self.objects if o.get("kind") == "Service" and o["metadata"]["name"] == pod_service(name)
            ]
            self.network.add_name(
                f"{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local", self.network.address_of(name)
            )

    def _add_ray_pods(self) -> None:
        for ray_pod in build_pods(self.rayservice, NAMESPACE):
            self.ray_pods[ray_pod.name] = ray_pod
            self.network.add_pod(ray_pod.name)
            container = ray_pod.ray_container
            store = object_store_of(ray_pod)
            process = self._pod_process(ray_pod.name, ray_pod.pod, container, ray_pod.shm_bytes)
            if "nvidia.com/gpu" in (container.get("resources", {}).get("limits") or {}):
                process.env[SIMULATED_GPUS_ENV] = "1"
            process.command[-1] = process.command[-1].replace(
                ray_pod.start_command, f"{ray_pod.start_command} --object-store-memory={store.bytes}"
            )
            if ray_pod.node_type == "head":
                process.session_nice = HEAD_SESSION_NICE
            if ray_pod.node_type == "worker":
                head_fqdn = ray_pod.start_params["address"]
                probe = f"until ray health-check --address {head_fqdn} >/dev/null 2>&1; do sleep {GCS_PROBE_INTERVAL_S}; done"  # noqa: E501
                process.init_commands = [["/bin/bash", "-c", probe]]
            self.pods[ray_pod.name] = process
        head = next(p for p in self.ray_pods.values() if p.node_type == "head")
        fqdn = next(p for p in self.ray_pods.values() if p.node_type == "worker").start_params["address"].split(":")[0]
        self.network.add_name(fqdn, self.network.address_of(head.name))
        token_ref = next((e for e in head.ray_container.get("env") or [] if e["name"] == "RAY_AUTH_TOKEN"), None)
        if token_ref is not None:
            self.token = self.pods[head.name].env["RAY_AUTH_TOKEN"]

    def start(self) -> None:
        """Network, Redis, head, workers: each pod started and the Ray nodes joined.

        A Ray pod that fails to start is replaced, as the operator replaces it; every start is
        recorded in :attr:`starts`.
        """
        self.network.create()
        self._add_redis()
        self._add_ray_pods()
        for name, process in self.pods.items():
            if name not in self.ray_pods:
                process.start()
                self.wait_for_ports(name)
        self.starts += self.replace_until_joined(self.head)
        for name in self.workers():
            self.start_pod(name, wait=False)
        for name in self.workers():
            began = time.monotonic()
            try:
                self.wait_until_joined(name)
            except PodStartError as error:
                self.starts.append(
                    PodStart(name, error.generation, False, round(time.monotonic() - began, 1), error.reason)
                )
                self.pods[name].kill()
                self.starts += self.replace_until_joined(name)
                continue
            self.starts.append(PodStart(name, self.pods[name].generation, True, round(time.monotonic() - began, 1)))

    def start_pod(self, name: str, wait: bool = True) -> None:
        """(Re)start one pod; with ``wait``, until its Ray node is up (the head: until the dashboard answers)."""
        self.pods[name].start()
        if wait:
            self.wait_until_joined(name)

    def wait_for_ports(self, name: str, timeout_s: float = 60) -> None:
        """Until every declared container port of a (non-Ray) pod accepts connections."""
        address = self.network.address_of(name)
        for port in self.pods[name].ports:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    socket.create_connection((address, port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or not self.pods[name].alive():
                        raise PodStartError(self.pods[name], f"never listened on port {port}") from None
                    time.sleep(0.2)

    def wait_until_joined(self, name: str, timeout_s: float = POD_START_TIMEOUT_S) -> None:
        """Until the pod's raylet reports healthy on its agent port (what KubeRay's probes ask).

        Raises :class:`PodStartError` (with the pod's last log lines) when the pod exits first or
        does not join within ``timeout_s``.
        """
        url = f"http://{self.network.address_of(name)}:52365/api/local_raylet_healthz"
        if name == self.head:
            url = f"http://{self.network.address_of(name)}:8265/api/gcs_healthz"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.pods[name].alive():
                raise PodStartError(self.pods[name], "exited before its Ray node joined")
            try:
                if "success" in requests.get(url, timeout=2).text:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise PodStartError(self.pods[name], f"did not join within {timeout_s} s")

    def replace_until_joined(self, name: str, max_starts: int = MAX_POD_STARTS) -> list[PodStart]:
        """Start ``name`` until its Ray node joins, replacing it each time it fails, as KubeRay does.

        With ``restartPolicy: Never`` (the chart's autoscaler v2) a Ray container that exits is not
        restarted in place: the pod fails and the operator creates a new one. Each start is a new
        generation here (fresh /tmp, as a replacement pod). Returns every start, the last one
        successful; raises the last :class:`PodStartError` after ``max_starts`` failed starts.
        """
        starts: list[PodStart] = []
        while True:
            self.start_pod(name, wait=False)
            began = time.monotonic()
            try:
                self.wait_until_joined(name)
            except PodStartError as error:
                starts.append(PodStart(name, error.generation, False, round(time.monotonic() - began, 1), error.reason))
                self.pods[name].kill()
                if len(starts) >= max_starts:
                    raise
                continue
            starts.append(PodStart(name, self.pods[name].generation, True, round(time.monotonic() - began, 1)))
            return starts

    def replace_failed_pods(self) -> list[PodStart]:
        """A new generation of every Ray pod whose main process has exited (the operator's reconcile).

        Returns, per replaced pod, its failed start (with the reason) and the new one (not waited
        for, so recorded as not yet joined).
        """
        replaced = []
        for name in self.ray_pods:
            pod = self.pods[name]
            if pod.process is not None and not pod.alive():
                failed = PodStartError(pod, "exited")
                replaced.append(PodStart(name, pod.generation, False, 0.0, failed.reason))
                pod.kill()
                self.start_pod(name, wait=False)
                replaced.append(PodStart(name, pod.generation, False, 0.0))
        return replaced

    def ready(self, name: str) -> bool:
        """KubeRay's readiness probe of a RayService worker, as the pod carries it.

        The probe's health URLs (the raylet's, on the dashboard agent, and the Serve proxy's
        ``/-/healthz``) each answer "success". A Service sends traffic to a worker only while this
        holds.
        """
        address = self.network.address_of(name)
        for port, path in readiness_urls(self.ray_pods[name].ray_container):
            try:
                if "success" not in requests.get(f"http://{address}:{port}{path}", timeout=2).text:
                    return False
            except requests.RequestException:
                return False
        return True

    def wait_until_ready(self, names: list[str], timeout_s: float = POD_START_TIMEOUT_S) -> None:
        """Until every named worker passes its readiness probe."""
        deadline = time.monotonic() + timeout_s
        for name in names:
            while not self.ready(name):
                if time.monotonic() > deadline:
                    raise PodStartError(self.pods[name], f"not ready within {timeout_s} s")
                time.sleep(0.5)

    def deploy(self, timeout_s: float = DEPLOY_TIMEOUT_S) -> float:
        """PUT serveConfigV2 as the operator does; return the seconds until it is served.

        Served: every application RUNNING and every worker ready (in the serve Service).
        """
        began = time.monotonic()
        client = self.dashboard()
        client.deploy(self.serve_config)
        client.wait_until_running([app["name"] for app in self.serve_config["applications"]], timeout_s=timeout_s)
        self.wait_until_ready(self.workers())
        return time.monotonic() - began

    # ---- observing ----------------------------------------------------------------------------

    def replicas(self) -> list[Replica]:
        """Every replica Serve reports, with the pod it runs in."""
        pod_of_address = {self.network.address_of(name): name for name in self.ray_pods}
        found = []
        for app in (self.dashboard().status().get("applications") or {}).values():
            for deployment, details in (app.get("deployments") or {}).items():
                for replica in details.get("replicas") or []:
                    pod = pod_of_address.get(replica.get("node_ip", ""), "?")
                    found.append(Replica(deployment, replica["replica_id"], pod, replica["state"]))
        return found

    def healthy(self) -> bool:
        """Every application RUNNING and every deployment HEALTHY with all its target replicas RUNNING."""
        try:
            status = self.dashboard(timeout_s=5).status()
        except (requests.RequestException, ValueError):
            return False
        for app in (status.get("applications") or {}).values():
            if app.get("status") != "RUNNING":
                return False
            for details in (app.get("deployments") or {}).values():
                running = sum(1 for r in details.get("replicas") or [] if r["state"] == "RUNNING")
                if details.get("status") != "HEALTHY" or running < details.get("target_num_replicas", 0):
                    return False
        return bool(status.get("applications"))

    # ---- faults -------------------------------------------------------------------------------

    def kill_pod(self, name: str) -> None:
        """Kill every process of the pod, as when its container dies."""
        self.pods[name].kill()

    def stop(self) -> None:
        """Kill every pod and remove the network."""
        for process in reversed(list(self.pods.values())):
            process.kill()
        self.network.destroy()


def pod_service(statefulset_pod: str) -> str:
    """The Service of a StatefulSet's pod (``<name>-0`` -> ``<name>``: the chart names them alike)."""
    return statefulset_pod.rsplit("-", 1)[0]


#: Ray's own logs of a node worth keeping: the GCS (head), the raylet, the dashboard and its agent.
RAY_LOGS = ("gcs_server.out", "gcs_server.err", "raylet.out", "raylet.err", "dashboard.log", "dashboard_agent.log")


def keep_pod_logs(run_dir: Path, into: Path) -> None:
    """Copy every pod generation's output, and its Ray node's logs, to ``into/<pod>.<generation>/``."""
    into.mkdir(parents=True, exist_ok=True)
    for log in run_dir.glob("*.log"):
        shutil.copy(log, into / log.name)
    for session in run_dir.glob("*/tmp/ray/session_*/logs"):
        generation = session.parents[3].name  # <pod>.<generation>
        for name in RAY_LOGS:
            if (session / name).is_file():
                (into / generation).mkdir(exist_ok=True)
                shutil.copy(session / name, into / generation / name)


@contextmanager
def running_cluster(objects: list[dict[str, Any]], keep_logs: Path | None = None) -> Iterator[RenderedCluster]:
    """A started :class:`RenderedCluster` for the block; stopped (and its files removed) after."""
    # Not under /tmp: each pod gets a /tmp of its own, which would hide the run's files from it.
    run_dir = Path(tempfile.mkdtemp(prefix="mnist-serve-multinode-", dir="/var/tmp"))
    cluster = RenderedCluster(objects, run_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if keep_logs is not None:
            keep_pod_logs(run_dir, keep_logs)
        subprocess.run(["rm", "-rf", str(run_dir)], check=False)
