"""One install of the chart on the e2e cluster, and the user-flow steps run against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from serve_app.config import REPO_ROOT
from tests.support.kube import (
    DIGITS_DIR,
    CommandError,
    FaultReport,
    Kube,
    PortForward,
    Settings,
    auth_secret,
    fault_command,
    fault_report_path,
    head_service_name,
    helm,
    install_args,
    leftovers,
    one_fault_interval,
    pod_selector,
    rayservice_of_manifest,
    read_fault_report,
    readiness,
    scenario_values,
    select_pods,
    serve_service_name,
    wait_until,
)

RELEASE = "mnist-serve"
SERVE_PORT, DASHBOARD_PORT, GRPC_PORT = 8000, 8265, 9000


@dataclass
class Release:
    """One install of the chart in its own namespace."""

    kube: Kube
    settings: Settings
    name: str
    namespace: str
    values_files: list[Path]
    rayservice: dict[str, Any] = field(default_factory=dict)  # as rendered (helm get manifest)
    installed: bool = True
    ready_after_s: float | None = None

    @property
    def rayservice_name(self) -> str:
        """The RayService's name."""
        return self.rayservice["metadata"]["name"]

    def live(self) -> dict[str, Any]:
        """The RayService as it is now, with its status."""
        live = self.kube.rayservice(self.namespace, self.rayservice_name)
        if live is None:
            raise AssertionError(f"RayService {self.namespace}/{self.rayservice_name} does not exist")
        return live

    def wait_ready(self, timeout_s: float | None = None) -> float:
        """Block until the RayService's Ready condition is True; the seconds it took."""
        started = time.monotonic()

        def check() -> tuple[bool, str]:
            live = self.kube.rayservice(self.namespace, self.rayservice_name)
            return readiness(live) if live else (False, "the RayService does not exist")

        wait_until(
            check,
            timeout_s or self.settings.ready_timeout_s,
            f"RayService {self.namespace}/{self.rayservice_name} Ready",
            interval_s=5,
        )
        return time.monotonic() - started

    def pod_names(self, node_type: str, ready_only: bool = True, serving: bool = False) -> list[str]:
        """Names of the release's Ray pods of one node type (Ready ones, those the serve Service selects)."""
        selector = pod_selector(self.name, node_type)
        if serving:
            selector["ray.io/serve"] = "true"
        return select_pods(self.kube.pods(self.namespace, selector), selector, ready_only=ready_only)

    def pod_uids(self, node_type: str) -> dict[str, str]:
        """Name -> uid of the release's pods of one node type."""
        pods = self.kube.pods(self.namespace, pod_selector(self.name, node_type))
        return {pod["metadata"]["name"]: pod["metadata"]["uid"] for pod in pods}

    def token(self) -> str:
        """Ray's auth token (empty when token auth is off)."""
        secret = auth_secret(self.rayservice)
        return self.kube.secret_value(self.namespace, secret, "auth_token") if secret else ""

    def forward(self, target: str | Callable[[], str], port: int) -> PortForward:
        """A supervised port-forward into the release's namespace."""
        return PortForward(self.namespace, target, port, context=self.kube.context)

    def grpc_forward(self) -> PortForward:
        """The gRPC API on a local port: port ``serve-grpc`` of KubeRay's serve Service."""
        return self.forward(f"svc/{self.rayservice_name}-serve-svc", GRPC_PORT)

    def serve_forward(self, prefer: str = "service") -> PortForward:
        """The Serve proxy on a local port: through the serve Service, or pinned to one pod that stays.

        ``prefer``: ``service`` (kubectl picks a pod of the serve Service), ``head`` (the head pod,
        which serves unless excludeHeadPodFromServeSvc) or ``worker`` (a Ready worker the serve
        Service selects). A pinned forward follows its kind of pod when that pod is replaced.
        """
        service = f"svc/{serve_service_name(self.rayservice)}"
        if prefer == "service":
            return self.forward(service, SERVE_PORT)

        def pinned() -> str:
            names = self.pod_names(prefer, serving=True)
            return f"pod/{names[0]}" if names else service

        return self.forward(pinned, SERVE_PORT)

    def dashboard_forward(self) -> PortForward:
        """The Ray dashboard (head Service, port 8265) on a local port."""
        return self.forward(f"svc/{head_service_name(self.rayservice)}", DASHBOARD_PORT)

    def uninstall(self) -> None:
        """``helm uninstall --wait`` (once)."""
        if self.installed:
            helm("uninstall", self.name, "--namespace", self.namespace, "--wait", "--timeout", "10m")
            self.installed = False

    def leftovers(self) -> dict[str, list[str]]:
        """RayServices, RayClusters and pods still in the release's namespace."""
        return leftovers(
            self.kube.custom_objects(self.namespace, "rayservices"),
            self.kube.custom_objects(self.namespace, "rayclusters"),
            self.kube.pods(self.namespace),
        )


def install_release(kube: Kube, settings: Settings, gpus: bool, ha: bool, label: str) -> Iterator[Release]:
    """Install the chart in a fresh namespace; uninstall it and delete the namespace afterwards."""
    namespace = f"mnist-serve-e2e-{label}-{int(time.time()) % 100000}"
    values = scenario_values(gpus, ha=ha) + list(settings.extra_values)
    print(f"\nhelm install {RELEASE} in {namespace} with {[str(p.relative_to(REPO_ROOT)) for p in values]}")
    release = Release(kube, settings, RELEASE, namespace, values)
    try:
        helm(*install_args(RELEASE, namespace, values, settings.set_values()))
        release.rayservice = rayservice_of_manifest(helm("get", "manifest", RELEASE, "--namespace", namespace))
        yield release
    finally:
        if settings.keep:
            print(f"\nkept release {RELEASE} in namespace {namespace} (MNIST_SERVE_E2E_KEEP=1)")
        else:
            try:
                release.uninstall()
            except CommandError as error:  # a failed install, or a test that uninstalled already
                print(f"\nhelm uninstall in {namespace}: {error}")
            kube.delete_namespace(namespace)


def expected_labels() -> list[int]:
    """True labels of the shipped digits, in the order of digits-10.json."""
    return [item["label"] for item in json.loads((DIGITS_DIR / "labels.json").read_text())]


def classify_examples(url: str, timeout_s: float = 120) -> None:
    """POST the ten shipped real digits (JSON, then three as PNG files) and check every label."""
    answer = requests.post(
        f"{url}/predict",
        data=(DIGITS_DIR / "digits-10.json").read_bytes(),
        headers={"Content-Type": "application/json"},
        timeout=timeout_s,
    )
    assert answer.status_code == 200, f"/predict answered {answer.status_code}: {answer.text[:500]}"
    assert answer.json()["predicted_label"] == expected_labels(), answer.text[:500]
    files = [
        ("files", (f"digit-{d}.png", (DIGITS_DIR / f"digit-{d}.png").read_bytes(), "image/png")) for d in (3, 5, 9)
    ]
    answer = requests.post(f"{url}/predict/image", files=files, timeout=timeout_s)
    assert answer.status_code == 200, f"/predict/image answered {answer.status_code}: {answer.text[:500]}"
    assert answer.json()["predicted_label"] == [3, 5, 9], answer.text[:500]


def classify_examples_over_grpc(target: str, timeout_s: float = 120) -> None:
    """Predict the ten shipped real digits over gRPC (raw bytes) and check every label; list the models."""
    import grpc
    import numpy as np

    from serve_app.grpc_api import call_metadata
    from serve_app.proto import mnist_pb2, mnist_pb2_grpc

    images = np.asarray(json.loads((DIGITS_DIR / "digits-10.json").read_text())["image"], dtype=np.uint8)
    with grpc.insecure_channel(target) as channel:
        stub = mnist_pb2_grpc.MnistStub(channel)
        request = mnist_pb2.PredictRequest(raw=images.tobytes())
        answer = stub.Predict(request, timeout=timeout_s, metadata=call_metadata())
        assert list(answer.predicted_label) == expected_labels(), answer
        models = stub.ListModels(mnist_pb2.ListModelsRequest(), timeout=timeout_s, metadata=call_metadata())
        assert models.default_model_id in {model.model_id for model in models.models}, models


@dataclass(frozen=True)
class FaultRun:
    """A Locust fault-injection run: its report, exit code, and where its files are."""

    report: FaultReport
    exit_code: int
    directory: Path


def run_fault_injection(release: Release, target: str, run_time_s: int, serve: PortForward, label: str) -> FaultRun:
    """Run loadtests/fault_injection.py against the release, deleting one ``target`` pod, and read its report.

    One fault per run (see :func:`one_fault_interval`), so each recovery is measured on its own.
    Its files (Locust's CSVs, the report, ``locust.log``) and a ``summary.json`` go to
    ``<reports>/<UTC time>-<label>/``.
    """
    directory = release.settings.reports_dir / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{label}"
    directory.mkdir(parents=True, exist_ok=True)
    prefix = directory / "fault"
    with release.dashboard_forward() as dashboard:
        command = fault_command(
            sys.executable,
            host=serve.url,
            dashboard_url=dashboard.url,
            namespace=release.namespace,
            release=release.name,
            target=target,
            csv_prefix=prefix,
            run_time_s=run_time_s,
            interval_s=one_fault_interval(run_time_s),
        )
        done = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, "RAY_AUTH_TOKEN": release.token()},
            capture_output=True,
            text=True,
            timeout=run_time_s + 300,
            check=False,
        )
    output = done.stdout + done.stderr
    (directory / "locust.log").write_text(output)
    report_path = fault_report_path(prefix)
    assert report_path is not None, (
        f"the fault-injection run wrote no report at {prefix} (exit {done.returncode}); "
        f"it ended with:\n{output[-2000:]}"
    )
    report = read_fault_report(report_path)
    summary = {
        "target": target,
        "namespace": release.namespace,
        "values": [str(path) for path in release.values_files],
        "exit_code": done.returncode,
        "serve_forward_restarts": serve.starts - 1,
        "requests": report.requests,
        "failures": report.failures,
        "verdict": report.verdict,
        "faults": [
            {"victim": f.victim, "recovery_s": f.recovery_s, "failures_during": f.failures_during,
             "failures_after": f.failures_after}
            for f in report.faults
        ],
    }  # fmt: skip
    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{label}: {report.summary()} (files: {directory})")
    return FaultRun(report=report, exit_code=done.returncode, directory=directory)
