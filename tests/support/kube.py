"""Helpers of the e2e suite: the chart's objects, Helm, kubectl and the Kubernetes API.

Pure functions (pod selectors, Service names, the auth Secret, status conditions, image values,
Helm arguments, fault reports) take and return plain dicts with the API's field names -- what
``kubectl get -o json`` prints and what the chart renders -- so tests/chart and tests/unit check
them on rendered chart objects, without a cluster. The live parts (:class:`Kube`, :func:`helm`,
:class:`PortForward`, :class:`LoadLoop`) act on the cluster of the current kubeconfig context
through the ``kubernetes`` client and the ``kubectl`` and ``helm`` binaries.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml

# Pod selection is the fault injector's own (loadtests/_faults.py; tests/conftest.py puts
# loadtests/ on the path): the suite deletes and waits for pods the way the load tests do.
from _faults import GROUP_LABEL as GROUP_LABEL
from _faults import INSTANCE_LABEL as INSTANCE_LABEL
from _faults import NODE_TYPE_LABEL as NODE_TYPE_LABEL
from _faults import is_ready as is_ready
from _faults import matches as matches
from _faults import pod_selector as pod_selector
from _faults import selector_string as selector_string

from serve_app.config import REPO_ROOT
from serve_app.local.ports import free_port
from serve_app.local.processes import stop_process

CHART_DIR = REPO_ROOT / "charts" / "mnist-serve"
CI_DIR = CHART_DIR / "ci"
DIGITS_DIR = REPO_ROOT / "examples" / "digits"
FAULT_LOCUSTFILE = REPO_ROOT / "loadtests" / "fault_injection.py"

SERVE_LABEL = "ray.io/serve"  # KubeRay's: "true" on pods the serve Service selects
GPU_RESOURCE = "nvidia.com/gpu"
RAY_GROUP, RAY_VERSION = "ray.io", "v1"

T = TypeVar("T")


# --- pods and Services ------------------------------------------------------------------------


def select_pods(pods: Iterable[Mapping[str, Any]], selector: Mapping[str, str], ready_only: bool = False) -> list[str]:
    """Names of the pods ``selector`` selects (only the Ready ones if asked), sorted."""
    return sorted(
        pod["metadata"]["name"]
        for pod in pods
        if matches(pod["metadata"].get("labels"), selector) and (is_ready(pod) or not ready_only)
    )


def serve_service_name(rayservice: Mapping[str, Any]) -> str:
    """KubeRay's Service in front of the Serve proxies: ``<RayService name>-serve-svc``."""
    return f"{rayservice['metadata']['name']}-serve-svc"


def head_service_name(rayservice: Mapping[str, Any]) -> str:
    """KubeRay's Service of the head (dashboard 8265, GCS 6379): ``<RayService name>-head-svc``."""
    return f"{rayservice['metadata']['name']}-head-svc"


def auth_secret(rayservice: Mapping[str, Any]) -> str | None:
    """The Secret holding Ray's auth token (key ``auth_token``) when token auth is on, else None."""
    options = rayservice["spec"]["rayClusterConfig"].get("authOptions") or {}
    return options.get("secretName") if options.get("mode") == "token" else None


def gcs_fault_tolerant(rayservice: Mapping[str, Any]) -> bool:
    """Whether the GCS keeps its state in Redis (workers survive the head's replacement)."""
    return bool(rayservice["spec"]["rayClusterConfig"].get("gcsFaultToleranceOptions"))


def head_serves(rayservice: Mapping[str, Any]) -> bool:
    """Whether the serve Service also selects the head pod (it does unless excludeHeadPodFromServeSvc)."""
    return not rayservice["spec"].get("excludeHeadPodFromServeSvc", False)


def rayservice_of_manifest(manifest: str) -> dict[str, Any]:
    """The one RayService of a release's manifest (``helm get manifest``)."""
    found = [doc for doc in yaml.safe_load_all(manifest) if doc and doc.get("kind") == "RayService"]
    if len(found) != 1:
        raise ValueError(f"expected one RayService in the release's manifest, found {len(found)}")
    return found[0]


# --- status -------------------------------------------------------------------------------------


def condition(obj: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition of type ``kind``, if the object has one."""
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return None


def readiness(rayservice: Mapping[str, Any]) -> tuple[bool, str]:
    """(ready, why): KubeRay's ``Ready`` condition, and a one-line account of the status."""
    status = rayservice.get("status") or {}
    ready = condition(rayservice, "Ready")
    applications = (status.get("activeServiceStatus") or {}).get("applicationStatuses") or {}
    apps = ", ".join(f"{name}={app.get('status')}" for name, app in sorted(applications.items())) or "none"
    if ready is None:
        return False, f"no Ready condition yet (serviceStatus={status.get('serviceStatus')!r}, applications: {apps})"
    why = (
        f"Ready={ready.get('status')} ({ready.get('reason')}: {ready.get('message') or '-'}); "
        f"serviceStatus={status.get('serviceStatus')!r}, applications: {apps}"
    )
    return ready.get("status") == "True", why


def active_cluster(rayservice: Mapping[str, Any]) -> str | None:
    """Name of the RayCluster that serves traffic now."""
    return ((rayservice.get("status") or {}).get("activeServiceStatus") or {}).get("rayClusterName")


def deployment_user_config(serve_status: Mapping[str, Any], app: str, deployment: str) -> dict[str, Any] | None:
    """A deployment's live ``user_config`` in the dashboard's declarative Serve status, if any."""
    details = ((serve_status.get("applications") or {}).get(app) or {}).get("deployments") or {}
    config = (details.get(deployment) or {}).get("deployment_config") or {}
    return config.get("user_config")


def gpu_allocatable(nodes: Iterable[Mapping[str, Any]]) -> int:
    """Allocatable ``nvidia.com/gpu`` of all nodes together (a whole number of devices)."""
    total = 0
    for node in nodes:
        value = ((node.get("status") or {}).get("allocatable") or {}).get(GPU_RESOURCE)
        if value is not None:
            total += int(str(value))
    return total


# --- values and Helm arguments ------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    """An image reference split as the chart's values take it."""

    repository: str
    tag: str = ""
    digest: str = ""

    def __str__(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}" if self.tag else self.repository


def parse_image_ref(ref: str) -> ImageRef:
    """``[host[:port]/]path[:tag][@sha256:...]`` into repository, tag and digest."""
    name, _, digest = ref.partition("@")
    if digest and not digest.startswith("sha256:"):
        raise ValueError(f"{ref!r}: a digest is sha256:<64 hex>")
    last = name.rsplit("/", 1)[-1]
    tag = ""
    if ":" in last:  # a colon before the last slash belongs to a registry's port
        name, tag = name.rsplit(":", 1)
    if not name:
        raise ValueError(f"{ref!r} has no repository")
    return ImageRef(repository=name, tag=tag, digest=digest)


def image_values(ref: str) -> dict[str, str]:
    """Flat chart values (``image.repository``, ``image.tag``, ``image.digest``) for an image reference."""
    image = parse_image_ref(ref)
    values = {"image.repository": image.repository, "image.digest": image.digest}
    if image.tag:
        values["image.tag"] = image.tag
    return values


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``, as ``helm --set`` reads dotted keys."""
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = nested
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return nested


def scenario_values(gpus: bool, ha: bool = False) -> list[Path]:
    """The chart's ci/ values files for a cluster with or without GPUs, with or without HA."""
    files = [CI_DIR / ("ha-values.yaml" if ha else "default-values.yaml")]
    if not gpus:
        files.append(CI_DIR / "cpu-only-values.yaml")
    return files


Value = str | int | float | bool


def install_args(
    release: str,
    namespace: str,
    values_files: Sequence[Path] = (),
    set_values: Mapping[str, Value] | None = None,
    chart: Path = CHART_DIR,
    timeout: str = "10m",
) -> list[str]:
    """``helm install`` arguments (the namespace is created when missing)."""
    args = ["install", release, str(chart), "--namespace", namespace, "--create-namespace", "--timeout", timeout]
    return args + _values_args(values_files, set_values)


def upgrade_args(
    release: str,
    namespace: str,
    set_values: Mapping[str, Value],
    chart: Path = CHART_DIR,
    timeout: str = "10m",
) -> list[str]:
    """``helm upgrade`` arguments that keep every value of the release and change ``set_values``."""
    args = ["upgrade", release, str(chart), "--namespace", namespace, "--reuse-values", "--timeout", timeout]
    return args + _values_args((), set_values)


def _values_args(values_files: Sequence[Path], set_values: Mapping[str, Value] | None) -> list[str]:
    """``--values`` per file; ``--set-string`` for strings (a tag like 1234 stays a string), else ``--set``."""
    args: list[str] = []
    for path in values_files:
        args += ["--values", str(path)]
    for key, value in sorted((set_values or {}).items()):
        if isinstance(value, str):
            args += ["--set-string", f"{key}={value}"]
        else:
            args += ["--set", f"{key}={json.dumps(value)}"]
    return args


def values_of_args(args: Sequence[str]) -> list[dict[str, Any]]:
    """The values documents a ``helm install``/``upgrade`` argument list passes, in order (for tests)."""
    documents: list[dict[str, Any]] = []
    for flag, value in itertools.pairwise(args):
        if flag == "--values":
            documents.append(yaml.safe_load(Path(value).read_text()) or {})
        elif flag == "--set-string":
            key, _, text = value.partition("=")
            documents.append(nest({key: text}))
        elif flag == "--set":
            key, _, text = value.partition("=")
            documents.append(nest({key: yaml.safe_load(text)}))
    return documents


def leftovers(
    rayservices: Iterable[Mapping[str, Any]],
    rayclusters: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
) -> dict[str, list[str]]:
    """What is still there, by kind (only kinds with something left)."""
    found = {
        "RayService": sorted(obj["metadata"]["name"] for obj in rayservices),
        "RayCluster": sorted(obj["metadata"]["name"] for obj in rayclusters),
        "Pod": sorted(obj["metadata"]["name"] for obj in pods),
    }
    return {kind: names for kind, names in found.items() if names}


# --- fault-injection runs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One fault of a fault-injection run, as loadtests/fault_injection.py reports it."""

    at: float
    target: str
    victim: str
    recovery_s: float | None
    failures_during: int
    failures_after: int


@dataclass(frozen=True)
class FaultReport:
    """The fault part of a fault-injection run's ``<prefix>_verdict.json``."""

    faults: tuple[Fault, ...]
    requests: int
    failures: int
    verdict: str

    @property
    def recovered(self) -> bool:
        """Whether every fault ended with the service back at full strength."""
        return bool(self.faults) and all(fault.recovery_s is not None for fault in self.faults)

    @property
    def max_recovery_s(self) -> float | None:
        """The longest recovery, None when some fault never recovered."""
        return max(f.recovery_s for f in self.faults) if self.recovered else None  # type: ignore[type-var]

    def summary(self) -> str:
        """One line for logs and reports."""
        recoveries = ", ".join("never" if f.recovery_s is None else f"{f.recovery_s:.1f} s" for f in self.faults)
        return (
            f"{len(self.faults)} fault(s) ({recoveries}); {self.failures} of {self.requests} requests failed; "
            f"verdict {self.verdict}"
        )


def _number(document: Mapping[str, Any], key: str, kind: type, where: str, optional: bool = False) -> Any:
    value = document.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise ValueError(f"{where}: {key} must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {key} must be finite, got {value!r}")
    return kind(value)


def parse_fault_report(document: Mapping[str, Any]) -> FaultReport:
    """Check and read a fault report; a ValueError names the field that is wrong."""
    if not isinstance(document.get("faults"), list):
        raise ValueError("faults must be a list")
    faults = []
    for number, item in enumerate(document["faults"]):
        where = f"faults[{number}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("target"), str):
            raise ValueError(f"{where}: target must be a string")
        faults.append(
            Fault(
                at=_number(item, "at", float, where),
                target=item["target"],
                victim=str(item.get("victim", "")),
                recovery_s=_number(item, "recovery_s", float, where, optional=True),
                failures_during=_number(item, "failures_during", int, where),
                failures_after=_number(item, "failures_after", int, where),
            )
        )
    if document.get("verdict") not in ("pass", "fail"):
        raise ValueError(f"verdict must be pass or fail, got {document.get('verdict')!r}")
    return FaultReport(
        faults=tuple(faults),
        requests=_number(document, "requests", int, "report"),
        failures=_number(document, "failures", int, "report"),
        verdict=document["verdict"],
    )


def read_fault_report(path: Path) -> FaultReport:
    """Read a fault-injection run's ``<prefix>_verdict.json``."""
    return parse_fault_report(json.loads(path.read_text()))


def fault_report_path(prefix: Path) -> Path | None:
    """The verdict a fault-injection run left at ``prefix`` (``faults``, ``requests``, ``failures``,
    ``verdict`` among its fields); None when the run left none.
    """
    path = Path(f"{prefix}_verdict.json")
    return path if path.is_file() else None


def one_fault_interval(run_time_s: int, fault_start_s: int = 10) -> int:
    """A ``--fault-interval`` that makes a run of ``run_time_s`` inject exactly one fault.

    The scenario injects a fault every interval from ``fault_start_s`` on while the next one still
    fits in the run, so an interval longer than half the remaining time leaves only the first; the
    rest of the run watches the recovery.
    """
    return max(15, run_time_s - fault_start_s - 10)


def fault_command(
    python: str,
    *,
    host: str,
    dashboard_url: str,
    namespace: str,
    release: str,
    target: str,
    csv_prefix: Path,
    run_time_s: int,
    users: int = 8,
    interval_s: int = 15,
    locustfile: Path = FAULT_LOCUSTFILE,
) -> list[str]:
    """The Locust fault-injection run against a release (its report: ``<csv_prefix>_verdict.json``)."""
    if target not in ("worker-pod", "head-pod"):
        raise ValueError(f"target is worker-pod or head-pod, got {target!r}")
    return [
        python, "-m", "locust", "-f", str(locustfile),
        "--host", host, "--headless", "-u", str(users), "-r", str(users), "-t", f"{run_time_s}s",
        "--csv", str(csv_prefix),
        "--fault-backend", "kubernetes", "--fault-target", target, "--fault-interval", str(interval_s),
        "--namespace", namespace, "--release", release, "--dashboard-url", dashboard_url,
    ]  # fmt: skip


# --- running things -----------------------------------------------------------------------------


class CommandError(RuntimeError):
    """A command exited non-zero (or ran past its timeout); the message carries its output."""


def run(cmd: Sequence[str], timeout_s: float = 600, env: Mapping[str, str] | None = None) -> str:
    """Run ``cmd`` to completion; its stdout, or a CommandError with the tail of its output."""
    try:
        done = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=None if env is None else {**os.environ, **env},
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise CommandError(f"{' '.join(cmd)} ran past {timeout_s} s") from error
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-3000:]
        raise CommandError(f"{' '.join(cmd)} exited {done.returncode}:\n{output}")
    return done.stdout


def helm(*args: str, timeout_s: float = 900) -> str:
    """``helm <args>`` against the current kube context."""
    return run(["helm", *args], timeout_s=timeout_s)


def wait_until(check: Callable[[], tuple[T | None, str]], timeout_s: float, what: str, interval_s: float = 2) -> T:
    """Poll ``check`` -> (value, state) until value is truthy; else TimeoutError naming ``what`` and the last state."""
    deadline = time.monotonic() + timeout_s
    state = "not checked yet"
    while True:
        value, state = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s; last state: {state}")
        time.sleep(interval_s)


class Kube:
    """The Kubernetes API of the current kubeconfig context (objects come back as plain dicts)."""

    def __init__(self, context: str | None = None, request_timeout_s: float = 30) -> None:
        from kubernetes import client, config  # imported here: pure helpers do not need the client

        # KUBECONFIG as it is now (the client reads it once, at import); a colon-separated list works.
        config_file = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        configuration = client.Configuration()
        config.load_kube_config(config_file=config_file, context=context, client_configuration=configuration)
        self.configuration = configuration
        self.api_client = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.extensions = client.ApiextensionsV1Api(self.api_client)
        self.timeout = request_timeout_s
        _, active = config.list_kube_config_contexts(config_file=config_file)
        self.context = context or active["name"]

    @property
    def server(self) -> str:
        """The API server's URL."""
        return self.configuration.host

    def _plain(self, obj: Any) -> Any:
        return self.api_client.sanitize_for_serialization(obj)

    def version(self, timeout_s: float = 5) -> str:
        """The API server's version (one request, no retries): proves it answers."""
        from kubernetes import client

        configuration = copy.deepcopy(self.configuration)
        configuration.retries = 0
        with client.ApiClient(configuration) as api_client:
            info = client.VersionApi(api_client).get_code(_request_timeout=timeout_s)
        return info.git_version

    def has_crd(self, name: str) -> bool:
        """Whether a CustomResourceDefinition is installed (``rayservices.ray.io``...)."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.extensions.read_custom_resource_definition(name, _request_timeout=self.timeout)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def nodes(self) -> list[dict[str, Any]]:
        """Every node."""
        return self._plain(self.core.list_node(_request_timeout=self.timeout).items)

    def pods(self, namespace: str, selector: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Pods of a namespace, optionally selected by labels."""
        listed = self.core.list_namespaced_pod(
            namespace, label_selector=selector_string(selector or {}), _request_timeout=self.timeout
        )
        return self._plain(listed.items)

    def custom_objects(self, namespace: str, plural: str) -> list[dict[str, Any]]:
        """``ray.io/v1`` objects of one kind (``rayservices``, ``rayclusters``) in a namespace."""
        listed = self.custom.list_namespaced_custom_object(
            RAY_GROUP, RAY_VERSION, namespace, plural, _request_timeout=self.timeout
        )
        return listed["items"]

    def rayservice(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One RayService, None when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom.get_namespaced_custom_object(
                RAY_GROUP, RAY_VERSION, namespace, "rayservices", name, _request_timeout=self.timeout
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded."""
        import base64

        secret = self.core.read_namespaced_secret(name, namespace, _request_timeout=self.timeout)
        return base64.b64decode(secret.data[key]).decode()

    def delete_namespace(self, namespace: str) -> None:
        """Delete a namespace and everything in it (not waiting)."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.delete_namespace(namespace, _request_timeout=self.timeout)
        except ApiException as error:
            if error.status != 404:
                raise


def probe_cluster(timeout_s: float = 5) -> tuple[Kube | None, str]:
    """(Kube, description) when the current context's API server answers; (None, why not) otherwise."""
    try:
        from kubernetes.config import ConfigException
    except ImportError:  # pragma: no cover - the test group installs it
        return None, "the kubernetes Python client is not installed (pip install --group test)"
    try:
        kube = Kube()
    except (ConfigException, OSError) as error:
        return None, f"no Kubernetes cluster: no usable kubeconfig ({error}); set KUBECONFIG or create one"
    except Exception as error:  # noqa: BLE001 - e.g. a failing exec credential plugin: no usable cluster either
        return None, f"no Kubernetes cluster: the kubeconfig could not be loaded ({type(error).__name__}: {error})"
    try:
        version = kube.version(timeout_s=timeout_s)
    except Exception as error:  # noqa: BLE001 - any failure to answer means "no cluster here"
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        where = f"context {kube.context} ({kube.server})"
        return None, f"no Kubernetes cluster: the API server of {where} did not answer within {timeout_s} s: {reason}"
    return kube, f"context {kube.context} ({kube.server}, Kubernetes {version})"


# --- settings -----------------------------------------------------------------------------------


#: Where scripts/image (and kind-up) write the reference of the image they built last.
LAST_IMAGE_FILE = REPO_ROOT / ".image"


def last_built_image() -> str:
    """The image scripts/image built last (its own tag), or "" (the chart's default then)."""
    return LAST_IMAGE_FILE.read_text().strip() if LAST_IMAGE_FILE.is_file() else ""


@dataclass(frozen=True)
class Settings:
    """What the e2e suite reads from the environment (documented in scripts/e2e)."""

    image: str = ""  # MNIST_SERVE_E2E_IMAGE, else .image (scripts/image), else the chart's default
    gpu: bool | None = None  # MNIST_SERVE_E2E_GPU: 1/0, None: detect allocatable nvidia.com/gpu
    extra_values: tuple[Path, ...] = ()  # MNIST_SERVE_E2E_VALUES: comma-separated values files
    ready_timeout_s: int = 900  # MNIST_SERVE_E2E_READY_TIMEOUT
    fault_run_s: int = 120  # MNIST_SERVE_E2E_FAULT_RUN_S: one Locust fault-injection run
    keep: bool = False  # MNIST_SERVE_E2E_KEEP=1: leave releases and namespaces for inspection
    reports_dir: Path = REPO_ROOT / "reports" / "e2e"  # MNIST_SERVE_E2E_REPORTS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read (and check) the MNIST_SERVE_E2E_* variables."""

        def number(name: str, default: int) -> int:
            text = env.get(name, "").strip()
            if not text:
                return default
            if not text.isdigit() or int(text) <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {text!r}")
            return int(text)

        gpu_text = env.get("MNIST_SERVE_E2E_GPU", "").strip()
        if gpu_text not in ("", "0", "1"):
            raise ValueError(f"MNIST_SERVE_E2E_GPU is 1, 0 or unset, got {gpu_text!r}")
        extra = tuple(Path(p.strip()) for p in env.get("MNIST_SERVE_E2E_VALUES", "").split(",") if p.strip())
        for path in extra:
            if not path.is_file():
                raise ValueError(f"MNIST_SERVE_E2E_VALUES names {path}, which is not a file")
        image = env.get("MNIST_SERVE_E2E_IMAGE", "").strip() or last_built_image()
        if image:
            parse_image_ref(image)
        return cls(
            image=image,
            gpu=None if not gpu_text else gpu_text == "1",
            extra_values=extra,
            ready_timeout_s=number("MNIST_SERVE_E2E_READY_TIMEOUT", cls.ready_timeout_s),
            fault_run_s=number("MNIST_SERVE_E2E_FAULT_RUN_S", cls.fault_run_s),
            keep=env.get("MNIST_SERVE_E2E_KEEP", "") == "1",
            reports_dir=Path(env.get("MNIST_SERVE_E2E_REPORTS") or cls.reports_dir),
        )

    def set_values(self) -> dict[str, str]:
        """Chart values for the image, when one is given."""
        return image_values(self.image) if self.image else {}


# --- port-forward and load ----------------------------------------------------------------------


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class PortForward:
    """``kubectl port-forward`` that stays up: restarted whenever it exits or its target changes.

    ``kubectl port-forward`` ends when the pod it forwards to is deleted, also when it was given a
    Service (it picks one of the Service's pods). ``target`` is ``svc/<name>``, ``pod/<name>``, or
    a function returning one, asked again at every restart and every ``check_interval_s``: a
    forward to "a Ready worker pod" moves to another pod when its pod goes away.
    """

    def __init__(
        self,
        namespace: str,
        target: str | Callable[[], str],
        remote_port: int,
        *,
        context: str | None = None,
        local_port: int | None = None,
        kubectl: Sequence[str] = ("kubectl",),
        check_interval_s: float = 2,
        start_timeout_s: float = 60,
    ) -> None:
        self.namespace = namespace
        self.resolve = target if callable(target) else (lambda: target)
        self.remote_port = remote_port
        self.context = context
        self.local_port = local_port or free_port()
        self.kubectl = list(kubectl)
        self.check_interval_s = check_interval_s
        self.start_timeout_s = start_timeout_s
        self.starts = 0
        self.targets: list[str] = []
        self._stop = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="port-forward-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<local port>``."""
        return f"http://127.0.0.1:{self.local_port}"

    def command(self, target: str) -> list[str]:
        """The kubectl command line for one target."""
        context = ["--context", self.context] if self.context else []
        return [
            *self.kubectl, *context, "--namespace", self.namespace, "port-forward", "--address", "127.0.0.1",
            target, f"{self.local_port}:{self.remote_port}",
        ]  # fmt: skip

    def log_tail(self, chars: int = 2000) -> str:
        """The end of kubectl's output, for error messages."""
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def _target(self, previous: str | None) -> str | None:
        try:
            return self.resolve()
        except Exception:  # noqa: BLE001 - an API hiccup mid-fault: keep the previous target
            return previous

    def _supervise(self) -> None:
        target: str | None = None
        while not self._stop.is_set():
            target = self._target(target)
            if target is None:
                self._stop.wait(1)
                continue
            self.targets.append(target)
            self.starts += 1
            self._process = subprocess.Popen(
                self.command(target), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            checked = time.monotonic()
            while not self._stop.wait(0.2) and self._process.poll() is None:
                if time.monotonic() - checked >= self.check_interval_s:
                    checked = time.monotonic()
                    if self._target(target) != target:
                        break
            self._terminate()
            self._stop.wait(0.5)

    def _terminate(self) -> None:
        process = self._process
        if process is not None:
            stop_process(process, timeout_s=5)

    def __enter__(self) -> PortForward:
        self._thread = threading.Thread(target=self._supervise, name="port-forward", daemon=True)
        self._thread.start()
        try:
            wait_until(
                lambda: (_accepting(self.local_port), f"kubectl said: {self.log_tail(300)!r}"),
                self.start_timeout_s,
                f"port-forward {self.namespace}/{self.targets[-1] if self.targets else '?'} -> {self.url}",
                interval_s=0.2,
            )
        except TimeoutError:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._terminate()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


@dataclass
class LoadLoop:
    """Clients that POST a real digit to ``<url>/predict`` back to back until stopped; every failure kept.

    A request succeeds when the answer is HTTP 200 with the expected labels; anything else (an
    error status, a wrong answer, a connection error or a timeout) is a failure, recorded with
    its time and reason.
    """

    url: str
    body: bytes
    expected: list[int]
    concurrency: int = 4
    timeout_s: float = 30
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)

    @property
    def requests(self) -> int:
        """Requests finished so far."""
        with self._lock:
            return self.ok + len(self.failures)

    def _client(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                problem = None
                try:
                    answer = session.post(
                        f"{self.url}/predict",
                        data=self.body,
                        headers={"Content-Type": "application/json"},
                        timeout=self.timeout_s,
                    )
                    if answer.status_code != 200:
                        problem = f"HTTP {answer.status_code}: {answer.text[:200]}"
                    elif answer.json().get("predicted_label") != self.expected:
                        problem = f"wrong answer: {answer.text[:200]}"
                except (requests.RequestException, ValueError) as error:
                    problem = f"{type(error).__name__}: {str(error)[:200]}"
                with self._lock:
                    if problem is None:
                        self.ok += 1
                    else:
                        self.failures.append(f"{time.strftime('%H:%M:%S')} {problem}")

    def __enter__(self) -> LoadLoop:
        self._threads = [
            threading.Thread(target=self._client, name=f"load-{n}", daemon=True) for n in range(self.concurrency)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 5)
