"""The local cluster: etcd, the Kubernetes control plane, kwok nodes and the KubeRay operator.

Every component is the upstream program, compiled by ``scripts/kube-build`` from pinned Go modules
(``cluster/versions.env``) and run here as a process:

* **etcd**, **kube-apiserver** (client certificates and RBAC, the PodSecurity admission, service
  account tokens), **kube-controller-manager** (each controller with its own service account, so
  RBAC is real), **kube-scheduler**;
* **kwok**, the Kubernetes SIG's node and pod simulator, in place of kubelets: it keeps the nodes'
  leases and Ready condition, and moves the pods bound to them through their phases (Running and
  Ready with an address from its CIDR, deletion finished) without running any container;
* the **KubeRay operator**, with its own ServiceAccount and the ClusterRole of its release, and
  ``--use-kubernetes-proxy`` (it reaches a head's dashboard through the API server);
* kind's default StorageClass, ``standard``, with volumes made beforehand for it;
* the nodes of ``cluster/kind/gpu.yaml`` (a control plane and three workers, one labelled and
  tainted for GPUs) with the capacity of the workstation the kind path is sized for
  (:data:`tools.kind_scheduling.WORKSTATION`); the GPU node advertises ``nvidia.com/gpu`` through
  the node-status capacity patch, as NVIDIA's device plugin does.

What this leaves out, and why, is in docs/kubernetes.md ("A real cluster without Docker").
The state (PKI, etcd's data, logs, kubeconfigs, process ids) lives in one directory, so ``up``,
``status`` and ``down`` can be separate commands.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tools.kind_scheduling import WORKSTATION, Host, kind_cluster
from tools.kube_local.certs import (
    ADMIN_CERT,
    ADMIN_KEY,
    APISERVER_CERT,
    APISERVER_KEY,
    CA_CERT,
    CA_KEY,
    SERVICE_ACCOUNT_KEY,
    SERVICE_ACCOUNT_PUB,
    Pki,
    ensure_pki,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "cluster" / "versions.env"
KUBE_BUILD = REPO_ROOT / "scripts" / "kube-build"
#: The KubeRay v1.7.0 CRDs the chart is validated with (copies, with their origin, in tests/chart/crds).
CRD_DIR = REPO_ROOT / "tests" / "chart" / "crds"
DEFAULT_STATE = Path(os.environ.get("MNIST_SERVE_KUBE_STATE", "/var/tmp/mnist-serve-kube"))

API_PORT = 6443
ETCD_CLIENT_PORT, ETCD_PEER_PORT, ETCD_METRICS_PORT = 2379, 2380, 2381
#: Off the ports a local run of the app uses (8000, 8080, 8265, 9000): the operator's metrics and probes.
OPERATOR_METRICS_PORT, OPERATOR_PROBE_PORT = 18080, 18081
SERVICE_CIDR = "10.96.0.0/16"
#: kwok gives the pods of its nodes addresses from here.
POD_CIDR = "10.244.0.0/16"
OPERATOR_NAMESPACE = "ray-system"
#: Where docs/kubernetes.md installs the chart; ``up`` creates it enforcing Pod Security ``restricted``.
RELEASE_NAMESPACE = "serving"
OPERATOR_ACCOUNT = "kuberay-operator"
#: Nodes kwok manages carry this label.
KWOK_LABEL = "mnist-serve.local/kwok"
#: kind's default StorageClass (its local-path provisioner's), and the volumes ``up`` makes for it.
STORAGE_CLASS = "standard"
VOLUMES, VOLUME_SIZE = 4, "10Gi"
#: Seconds each component gets to answer its health check.
START_TIMEOUT_S = 120
#: Pod Security levels a namespace can enforce.
POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """``cluster/versions.env`` as a dict (plain KEY=value lines)."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            found[key] = value
    return found


def built_binaries() -> Path | None:
    """The directory ``scripts/kube-build`` put the binaries in, or None when they are not built."""
    override = os.environ.get("MNIST_SERVE_KUBE_BIN")
    if override:
        return Path(override)
    printed = subprocess.run(["bash", str(KUBE_BUILD), "--print"], capture_output=True, text=True, check=False)
    return Path(printed.stdout.strip()) if printed.stdout.strip() else None


def kuberay_module_dir(version: str) -> Path:
    """The KubeRay operator's module source in Go's module cache (its RBAC manifests are read from it)."""
    return go_module_dir("github.com/ray-project/kuberay/ray-operator", f"v{version}")


def go_module_dir(module: str, version: str) -> Path:
    """A module's source in Go's module cache (``scripts/kube-build`` downloaded it)."""
    gomodcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True, env=_go_env()
    ).stdout.strip()
    return Path(gomodcache) / f"{module}@{version}"


#: kwok's own stages (``kustomize/stage`` of its module): nodes Ready at once and kept alive by
#: their Leases; pods Running and Ready once bound (init containers done), Job pods completed,
#: deletions finished.
KWOK_STAGES = ("node/fast", "node/heartbeat-with-lease", "pod/fast")


def kwok_config(version: str) -> str:
    """The configuration of kwok: its upstream stages, as one multi-document YAML."""
    root = go_module_dir("sigs.k8s.io/kwok", version) / "kustomize" / "stage"
    documents = []
    for stage in KWOK_STAGES:
        for path in sorted((root / stage).glob("*.yaml")):
            if path.name != "kustomization.yaml":
                documents.append(path.read_text().strip())
    return "\n---\n".join(documents) + "\n"


def _go_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"/usr/local/go/bin:{os.environ.get('PATH', '')}"}


@dataclass(frozen=True)
class Component:
    """One program of the cluster: how to start it and when it is up."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    #: An https URL answered with "ok" once the component is up (None: no check).
    health: str | None = None


@dataclass
class LocalCluster:
    """The cluster's state directory, its binaries, and what runs."""

    state: Path = DEFAULT_STATE
    bin_dir: Path | None = None
    host: Host = WORKSTATION
    kind_mode: str = "gpu"
    #: The processes this object started (reaped by :meth:`stop_all`; others are found by pid).
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # ---- paths ------------------------------------------------------------------------------

    @property
    def pki(self) -> Pki:
        """The PKI (created by :meth:`up`)."""
        return Pki(self.state / "pki")

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig a user exports as KUBECONFIG."""
        return self.state / "admin.kubeconfig"

    @property
    def logs(self) -> Path:
        """Each component's output, ``<name>.log``."""
        return self.state / "logs"

    @property
    def _pids(self) -> Path:
        return self.state / "pids.json"

    def binary(self, name: str) -> str:
        """The path of one built program."""
        if self.bin_dir is None:
            self.bin_dir = built_binaries()
        if self.bin_dir is None:
            raise FileNotFoundError("the cluster's binaries are not built: run bash scripts/kube-build")
        path = self.bin_dir / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run bash scripts/kube-build")
        return str(path)

    # ---- processes --------------------------------------------------------------------------

    def running(self) -> dict[str, int]:
        """Component -> pid, for those whose process is alive."""
        try:
            pids: dict[str, int] = json.loads(self._pids.read_text())
        except (OSError, ValueError):
            return {}
        return {name: pid for name, pid in pids.items() if _alive(pid)}

    def _record(self, name: str, pid: int) -> None:
        pids = self.running()
        pids[name] = pid
        self._pids.write_text(json.dumps(pids, indent=2))

    def start(self, component: Component) -> int:
        """Start a component in the background (its own session, output to its log); wait until it is up."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{component.name}.log").open("ab")
        process = subprocess.Popen(
            component.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **component.env},
            start_new_session=True,
        )
        log.close()  # the child holds its own descriptor
        self.children[component.name] = process
        self._record(component.name, process.pid)
        if component.health:
            self._wait_healthy(component, process)
        return process.pid

    def _wait_healthy(self, component: Component, process: subprocess.Popen[bytes]) -> None:
        assert component.health is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{component.name} exited ({process.returncode}): {self.log_tail(component.name)}")
            if self._answers_ok(component.health):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{component.name} not healthy after {START_TIMEOUT_S} s: {self.log_tail(component.name)}")

    def _answers_ok(self, url: str) -> bool:
        context = ssl.create_default_context(cafile=str(self.pki[CA_CERT])) if url.startswith("https") else None
        if context is not None and "6443" in url:
            context.load_cert_chain(str(self.pki[ADMIN_CERT]), str(self.pki[ADMIN_KEY]))
        if context is not None and "6443" not in url:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the components' self-signed health ports
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                return bool(answer.status == 200 and answer.read().strip() == b"ok")
        except OSError:
            return False

    def log_tail(self, name: str, lines: int = 8) -> str:
        """The last lines of a component's log, for an error message."""
        try:
            text = (self.logs / f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n    ".join(text.splitlines()[-lines:])

    def stop_all(self) -> None:
        """SIGTERM every component, SIGKILL what is left after 10 s."""
        pids = self.running()
        for pid in pids.values():
            with suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids.values()):
            time.sleep(0.2)
        for pid in pids.values():
            with suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        for process in self.children.values():
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self.children.clear()
        with suppress(FileNotFoundError):
            self._pids.unlink()

    # ---- kubectl ----------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The built kubectl against this cluster."""
        return subprocess.run(
            [self.binary("kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
        )

    def apply(self, objects: Sequence[dict[str, Any]]) -> None:
        """``kubectl apply`` of the given objects (server-side, as the cluster's own tools do)."""
        document = yaml.safe_dump_all(list(objects))
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=document)

    def get(self, *args: str) -> dict[str, Any]:
        """``kubectl get ... -o json``, parsed."""
        result: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return result

    # ---- the components ---------------------------------------------------------------------

    def _etcd(self) -> Component:
        client = f"http://127.0.0.1:{ETCD_CLIENT_PORT}"
        peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
        return Component(
            "etcd",
            [
                self.binary("etcd"),
                "--name=local",
                f"--data-dir={self.state / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                f"--listen-metrics-urls=http://127.0.0.1:{ETCD_METRICS_PORT}",
                "--log-level=warn",
            ],
        )

    def _apiserver(self) -> Component:
        pki = self.pki
        return Component(
            "kube-apiserver",
            [
                self.binary("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{ETCD_CLIENT_PORT}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # Loopback addresses cannot be the kubernetes Service's endpoints; nothing here
                # reaches the API server through that Service (the operator and kwok use kubeconfigs).
                "--endpoint-reconciler-type=none",
                f"--secure-port={API_PORT}",
                f"--tls-cert-file={pki[APISERVER_CERT]}",
                f"--tls-private-key-file={pki[APISERVER_KEY]}",
                f"--client-ca-file={pki[CA_CERT]}",
                f"--service-account-key-file={pki[SERVICE_ACCOUNT_PUB]}",
                f"--service-account-signing-key-file={pki[SERVICE_ACCOUNT_KEY]}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                "--profiling=false",
            ],
            health=f"https://127.0.0.1:{API_PORT}/readyz",
        )

    def _component_client_flags(self) -> list[str]:
        """How the controller-manager and the scheduler reach the API server, and where they listen."""
        config = str(self.kubeconfig)
        return [
            f"--kubeconfig={config}",
            f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}",
            "--bind-address=127.0.0.1",
        ]

    def _controller_manager(self) -> Component:
        pki = self.pki
        return Component(
            "kube-controller-manager",
            [
                self.binary("kube-controller-manager"),
                *self._component_client_flags(),
                f"--service-account-private-key-file={pki[SERVICE_ACCOUNT_KEY]}",
                f"--root-ca-file={pki[CA_CERT]}",
                f"--cluster-signing-cert-file={pki[CA_CERT]}",
                f"--cluster-signing-key-file={pki[CA_KEY]}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false",
            ],
            health="https://127.0.0.1:10257/healthz",
        )

    def _scheduler(self) -> Component:
        return Component(
            "kube-scheduler",
            [
                self.binary("kube-scheduler"),
                *self._component_client_flags(),
                "--leader-elect=false",
            ],
            health="https://127.0.0.1:10259/healthz",
        )

    def _kwok(self) -> Component:
        config = self.state / "kwok.yaml"
        config.write_text(kwok_config(read_versions()["KWOK_VERSION"]))
        return Component(
            "kwok",
            [
                self.binary("kwok"),
                f"--config={config}",
                f"--kubeconfig={self.kubeconfig}",
                f"--manage-nodes-with-label-selector={KWOK_LABEL}=true",
                f"--cidr={POD_CIDR}",
                "--node-ip=10.244.255.254",
                "--server-address=127.0.0.1:10247",
            ],
        )

    def _operator(self, kubeconfig: Path) -> Component:
        return Component(
            "kuberay-operator",
            [
                self.binary("ray-operator"),
                f"--metrics-addr=127.0.0.1:{OPERATOR_METRICS_PORT}",
                f"--health-probe-bind-address=127.0.0.1:{OPERATOR_PROBE_PORT}",
                "--enable-leader-election=false",
                "--use-kubernetes-proxy",
                "--log-stdout-encoder=console",
            ],
            env={"KUBECONFIG": str(kubeconfig)},
        )

    # ---- steps ------------------------------------------------------------------------------

    def write_admin_kubeconfig(self) -> None:
        """The admin kubeconfig (client certificate in ``system:masters``, as kubeadm's admin.conf)."""
        pki = self.pki
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "mnist-serve-local",
                    "cluster": {"server": f"https://127.0.0.1:{API_PORT}", "certificate-authority": str(pki[CA_CERT])},
                }
            ],
            "users": [
                {
                    "name": "kubernetes-admin",
                    "user": {"client-certificate": str(pki[ADMIN_CERT]), "client-key": str(pki[ADMIN_KEY])},
                }
            ],
            "contexts": [
                {
                    "name": "mnist-serve-local",
                    "context": {"cluster": "mnist-serve-local", "user": "kubernetes-admin", "namespace": "default"},
                }
            ],
            "current-context": "mnist-serve-local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def node_objects(self) -> list[dict[str, Any]]:
        """The kind cluster's nodes as Node objects, managed by kwok."""
        nodes = []
        for node in kind_cluster(self.kind_mode, self.host).nodes:
            labels = {**node.labels, KWOK_LABEL: "true", "kubernetes.io/arch": "amd64", "type": "kwok"}
            if any(t.get("key") == "node-role.kubernetes.io/control-plane" for t in node.taints):
                labels["node-role.kubernetes.io/control-plane"] = ""
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": node.name,
                        "labels": labels,
                        "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
                    },
                    "spec": {"taints": node.taints} if node.taints else {},
                }
            )
        return nodes

    def node_capacity(self) -> dict[str, dict[str, str]]:
        """Node -> its capacity (cpu, memory, pods and, on the GPU node, ``nvidia.com/gpu``)."""
        found = {}
        for node in kind_cluster(self.kind_mode, self.host).nodes:
            capacity = {"pods": "110"}
            for name, value in node.allocatable.items():
                capacity[name] = str(int(value)) if name != "memory" else f"{int(value) // 2**20}Mi"
            found[node.name] = capacity
        return found

    def add_nodes(self) -> None:
        """Create the nodes, then set their capacity with the node-status patch (GPUs included)."""
        self.apply(self.node_objects())
        for name, capacity in self.node_capacity().items():
            patch = [
                {"op": "add", "path": "/status/capacity", "value": capacity},
                {"op": "add", "path": "/status/allocatable", "value": capacity},
            ]
            self.kubectl("patch", "node", name, "--subresource=status", "--type=json", "-p", json.dumps(patch))

    def storage_objects(self) -> list[dict[str, Any]]:
        """The default StorageClass of kind, ``standard``, with a few volumes for it to bind.

        kind's local-path provisioner makes a volume when a claim's pod is scheduled; kwok runs no
        provisioner, so ``up`` makes the volumes beforehand (hostPath, never mounted: no container
        runs). The binding is the real PV controller's and scheduler's (``WaitForFirstConsumer``).
        """
        objects: list[dict[str, Any]] = [
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": STORAGE_CLASS,
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": "rancher.io/local-path",
                "volumeBindingMode": "WaitForFirstConsumer",
                "reclaimPolicy": "Delete",
            }
        ]
        for index in range(VOLUMES):
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": f"local-volume-{index}"},
                    "spec": {
                        "storageClassName": STORAGE_CLASS,
                        "capacity": {"storage": VOLUME_SIZE},
                        "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "hostPath": {"path": str(self.state / "volumes" / str(index))},
                    },
                }
            )
        return objects

    def install_crds(self) -> None:
        """The KubeRay v1.7.0 CRDs the project carries, and the others from the operator's module.

        The operator watches RayJobs too and stops without their CRD.
        """
        documents = [yaml.safe_load(path.read_text()) for path in sorted(CRD_DIR.glob("ray.io_*.yaml"))]
        kinds = {doc["spec"]["names"]["kind"] for doc in documents}
        module = kuberay_module_dir(read_versions()["KUBERAY_OPERATOR_BUILD_VERSION"]) / "config" / "crd" / "bases"
        for path in sorted(module.glob("ray.io_*.yaml")):
            doc = yaml.safe_load(path.read_text())
            if doc["spec"]["names"]["kind"] not in kinds:
                documents.append(doc)
        self.apply(documents)
        for doc in documents:
            self.kubectl("wait", "--for=condition=Established", f"crd/{doc['metadata']['name']}", "--timeout=60s")

    def operator_rbac(self) -> list[dict[str, Any]]:
        """The operator's ServiceAccount, ClusterRole and binding, from the release's own manifests."""
        rbac = kuberay_module_dir(read_versions()["KUBERAY_OPERATOR_BUILD_VERSION"]) / "config" / "rbac"
        objects: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}},
        ]
        for name in ("service_account.yaml", "role.yaml", "role_binding.yaml"):
            for doc in yaml.safe_load_all((rbac / name).read_text()):
                if not doc:
                    continue
                if doc["kind"] == "ServiceAccount":
                    doc["metadata"]["namespace"] = OPERATOR_NAMESPACE
                if doc["kind"] == "ClusterRoleBinding":
                    for subject in doc["subjects"]:
                        subject["namespace"] = OPERATOR_NAMESPACE
                objects.append(doc)
        return objects

    def operator_kubeconfig(self) -> Path:
        """A kubeconfig with a token of the operator's ServiceAccount (TokenRequest, one year)."""
        token = self.kubectl(
            "create", "token", OPERATOR_ACCOUNT, "-n", OPERATOR_NAMESPACE, "--duration=8760h"
        ).stdout.strip()
        config = yaml.safe_load(self.kubeconfig.read_text())
        config["users"] = [{"name": OPERATOR_ACCOUNT, "user": {"token": token}}]
        config["contexts"][0]["context"] |= {"user": OPERATOR_ACCOUNT, "namespace": OPERATOR_NAMESPACE}
        path = self.state / "operator.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def wait_for_service_account(self, namespace: str, timeout_s: float = 60) -> None:
        """Until the controller-manager has made the namespace's ``default`` ServiceAccount (pods need it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise TimeoutError(f"no default ServiceAccount in {namespace} after {timeout_s} s")

    def create_namespace(self, name: str, enforce: str | None = "restricted") -> None:
        """A namespace, with Pod Security ``enforce`` (and warn, audit) at the given level."""
        labels = {}
        if enforce is not None:
            if enforce not in POD_SECURITY_LEVELS:
                raise ValueError(f"Pod Security level {enforce!r}: one of {', '.join(POD_SECURITY_LEVELS)}")
            labels = {f"pod-security.kubernetes.io/{mode}": enforce for mode in ("enforce", "warn", "audit")}
        self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}])
        self.wait_for_service_account(name)

    def up(self, with_operator: bool = True) -> float:
        """Start everything not already running; return the seconds it took."""
        began = time.monotonic()
        self.state.mkdir(parents=True, exist_ok=True)
        ensure_pki(self.state / "pki")
        self.write_admin_kubeconfig()
        running = self.running()
        if "etcd" not in running:
            self.start(self._etcd())
            self._wait_for_etcd()
        for component in (self._apiserver(), self._controller_manager(), self._scheduler()):
            if component.name not in running:
                self.start(component)
        self.wait_for_service_account("default")
        if "kwok" not in running:
            self.add_nodes()
            self.apply(self.storage_objects())
            self.start(self._kwok())
        self.wait_for_nodes_ready()
        if with_operator and "kuberay-operator" not in running:
            self.install_operator()
        self.create_namespace(RELEASE_NAMESPACE, enforce="restricted")
        return time.monotonic() - began

    def install_operator(self) -> None:
        """The CRDs, the operator's RBAC, and the operator itself, until its readiness probe answers."""
        self.install_crds()
        self.apply(self.operator_rbac())
        self.wait_for_service_account(OPERATOR_NAMESPACE)
        component = self._operator(self.operator_kubeconfig())
        self.start(component)
        deadline = time.monotonic() + START_TIMEOUT_S
        url = f"http://127.0.0.1:{OPERATOR_PROBE_PORT}/readyz"
        while not self._answers_ok(url):
            pid = self.running().get(component.name)
            if pid is None:
                raise RuntimeError(f"the KubeRay operator exited: {self.log_tail(component.name)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the KubeRay operator not ready: {self.log_tail(component.name)}")
            time.sleep(0.5)

    def _wait_for_etcd(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        url = f"http://127.0.0.1:{ETCD_METRICS_PORT}/health"
        while time.monotonic() < deadline:
            with suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=2) as answer:
                if json.loads(answer.read()).get("health") == "true":
                    return
            if "etcd" not in self.running():
                raise RuntimeError(f"etcd exited: {self.log_tail('etcd')}")
            time.sleep(0.3)
        raise TimeoutError(f"etcd not healthy: {self.log_tail('etcd')}")

    def wait_for_nodes_ready(self, timeout_s: float = 60) -> None:
        """Until kwok has every node Ready."""
        names = [node["metadata"]["name"] for node in self.node_objects()]
        self.kubectl("wait", "--for=condition=Ready", *[f"node/{n}" for n in names], f"--timeout={int(timeout_s)}s")

    def down(self, keep_state: bool = False) -> None:
        """Stop every component; remove the state directory unless ``keep_state``."""
        self.stop_all()
        if not keep_state:
            shutil.rmtree(self.state, ignore_errors=True)

    def status(self) -> dict[str, Any]:
        """What runs, and the nodes as the API server sees them."""
        running = self.running()
        nodes = {}
        if "kube-apiserver" in running:
            with suppress(subprocess.CalledProcessError):
                for node in self.get("nodes")["items"]:
                    ready = next(c["status"] for c in node["status"].get("conditions", []) if c["type"] == "Ready")
                    nodes[node["metadata"]["name"]] = {
                        "ready": ready,
                        "allocatable": node["status"].get("allocatable", {}),
                        "taints": node["spec"].get("taints", []),
                    }
        return {"state": str(self.state), "running": running, "nodes": nodes}

    def next_steps(self) -> str:
        """What ``up`` prints: the environment to export and the commands a user runs next."""
        assert self.bin_dir is not None
        return "\n".join(
            [
                f"export KUBECONFIG={self.kubeconfig}",
                f"export PATH={self.bin_dir}:$PATH",
                "kubectl get nodes",
                f"helm install mnist-serve charts/mnist-serve -n {RELEASE_NAMESPACE}",
                f"kubectl get rayservice,raycluster,pods,services -n {RELEASE_NAMESPACE}",
            ]
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by a parent that is gone) counts as stopped.
    with suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


@contextmanager
def local_cluster(state: Path, host: Host = WORKSTATION) -> Iterator[LocalCluster]:
    """A cluster that is up for the block and stopped, its state removed, after."""
    cluster = LocalCluster(state=state, host=host)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
