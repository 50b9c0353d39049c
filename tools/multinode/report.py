"""One scenario of the chart as a multi-node Ray cluster, from `helm template` to a report.

:func:`run_scenario` renders a ``ci/`` scenario with the real Helm engine, starts it
(:class:`tools.multinode.cluster.RenderedCluster`), deploys ``serveConfigV2``, and records what a
reviewer of the chart wants to know: the Ray resources each pod's node advertises (against what
KubeRay's ``ray start`` flags ask for), where Serve put each replica, whether real digits are
classified through every worker's serve port (HTTP) and a worker's ``serve-grpc`` port, and, with
``faults``, how the service rides out a CPU worker, a GPU worker and the head being killed under
steady load.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import requests

from serve_app.grpc_api import call_metadata
from serve_app.proto import mnist_pb2, mnist_pb2_grpc
from serve_app.training.examples import load_examples
from tools.multinode.cluster import RenderedCluster, running_cluster
from tools.multinode.faults import REQUEST_PATH, FaultReport, SteadyLoad, kill_and_recover, spread


@dataclass
class ScenarioReport:
    """What one scenario did on real Ray nodes."""

    scenario: str
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # pod -> group, address, Ray resources
    start_s: float = 0.0
    deploy_s: float = 0.0
    placement: dict[str, list[str]] = field(default_factory=dict)  # deployment -> pods of its replicas
    http_classified: dict[str, bool] = field(default_factory=dict)  # worker pod -> all digits right
    http_answers: dict[str, str] = field(default_factory=dict)  # worker pod -> a wrong answer, as received
    grpc_classified: bool | None = None
    faults: list[FaultReport] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {**asdict(self), "faults": [fault.as_dict() for fault in self.faults]}


def advertised_resources(cluster: RenderedCluster) -> dict[str, dict[str, float]]:
    """Pod -> the resources its Ray node reports to the GCS (Ray's state API, as the dashboard shows)."""
    response = requests.get(
        f"http://{cluster.network.address_of(cluster.head)}:8265/api/v0/nodes",
        params={"detail": "1"},
        headers=cluster.dashboard().headers,
        timeout=30,
    )
    response.raise_for_status()
    pod_of_address = {cluster.network.address_of(name): name for name in cluster.ray_pods}
    found = {}
    for node in response.json()["data"]["result"]["result"]:
        if node.get("state") == "ALIVE" and node["node_ip"] in pod_of_address:
            found[pod_of_address[node["node_ip"]]] = node["resources_total"]
    return found


def classify_over_http(cluster: RenderedCluster, pod: str, images: np.ndarray, labels: np.ndarray) -> str | None:
    """``POST /predict`` on the pod's serve port; None when every example digit is labelled right.

    Otherwise the answer received (status and body), for the report.
    """
    response = requests.post(cluster.serve_url(pod) + "/predict", json={"image": images.tolist()}, timeout=60)
    if response.status_code == 200 and response.json().get("predicted_label") == labels.tolist():
        return None
    return f"{response.status_code} {response.text[:300]}"


def classify_over_grpc(cluster: RenderedCluster, pod: str, images: np.ndarray, labels: np.ndarray) -> bool:
    """Whether ``mnist_serve.v1.Mnist/Predict`` on the pod's ``serve-grpc`` port labels every digit right."""
    config = cluster.serve_config
    port = int(config["grpc_options"]["port"])
    with grpc.insecure_channel(f"{cluster.network.address_of(pod)}:{port}") as channel:
        request = mnist_pb2.PredictRequest(raw=images.astype(np.uint8).tobytes())
        answer = mnist_pb2_grpc.MnistStub(channel).Predict(request, timeout=60, metadata=call_metadata())
    return list(answer.predicted_label) == labels.tolist()


def run_faults(cluster: RenderedCluster, images: np.ndarray, labels: np.ndarray) -> list[FaultReport]:
    """A CPU worker, a GPU worker, then the head, each killed under load through a surviving worker."""
    cpu, gpu = cluster.workers("cpu"), cluster.workers("gpu")
    entry = {"pod": cpu[-1]}
    load = SteadyLoad(lambda: cluster.serve_url(entry["pod"]), images, labels).start()
    reports = []
    try:
        time.sleep(3)
        spread_needed = min(len(cpu), len(gpu), 2)
        for fault, pod in (("CPU worker", cpu[0]), ("GPU worker", gpu[0]), ("head", cluster.head)):
            reports.append(
                kill_and_recover(cluster, pod, load, fault, entry["pod"], min_pods_per_deployment=spread_needed)
            )
    finally:
        load.stop()
    return reports


def run_scenario(
    scenario: str, objects: list[dict[str, Any]], faults: bool = False, keep_logs: Path | None = None
) -> ScenarioReport:
    """Start the rendered objects as Ray nodes, deploy, check placement and answers, optionally break it."""
    images, labels = load_examples()
    report = ScenarioReport(scenario)
    began = time.monotonic()
    with running_cluster(objects, keep_logs=keep_logs) as cluster:
        report.start_s = round(time.monotonic() - began, 1)
        report.deploy_s = round(cluster.deploy(), 1)
        resources = advertised_resources(cluster)
        for name, pod in cluster.ray_pods.items():
            report.pods[name] = {
                "group": pod.group,
                "address": cluster.network.address_of(name),
                "ray_start": pod.start_params,
                "ray_resources": resources.get(name, {}),
            }
        report.placement = {
            name: sorted(pods) for name, pods in spread(cluster, (*REQUEST_PATH, "TaskConsumer")).items()
        }
        for pod in cluster.workers():
            wrong = classify_over_http(cluster, pod, images, labels)
            report.http_classified[pod] = wrong is None
            if wrong is not None:
                report.http_answers[pod] = wrong
        if "grpc_options" in cluster.serve_config:
            report.grpc_classified = classify_over_grpc(cluster, cluster.workers()[-1], images, labels)
        if faults:
            report.faults = run_faults(cluster, images, labels)
    return report


def format_report(report: ScenarioReport) -> str:
    """The report as a person reads it."""
    lines = [
        f"scenario {report.scenario}: pods up in {report.start_s} s, serveConfigV2 RUNNING {report.deploy_s} s later"
    ]
    lines.append("  pod                               group      Ray resources")
    for name, pod in report.pods.items():
        shown = {k: v for k, v in pod["ray_resources"].items() if not k.startswith("node:") and "memory" not in k}
        lines.append(f"  {name:<33} {pod['group']:<10} {json.dumps(shown, sort_keys=True)}")
    lines.append("  replicas:")
    for deployment, pods in report.placement.items():
        if pods:
            lines.append(f"    {deployment:<13} on {', '.join(pods)}")
    http = ", ".join(f"{pod}: {'ok' if ok else 'WRONG'}" for pod, ok in report.http_classified.items())
    lines.append(f"  real digits over HTTP through each worker's serve port: {http}")
    lines += [f"      {pod} answered: {answer}" for pod, answer in report.http_answers.items()]
    if report.grpc_classified is not None:
        lines.append(f"  real digits over gRPC (serve-grpc): {'ok' if report.grpc_classified else 'WRONG'}")
    for fault in report.faults:
        lines.append(
            f"  {fault.fault} killed ({fault.pod}), load through {fault.entry}: {fault.requests - fault.failures}"
            f"/{fault.requests} requests succeeded ({100 * fault.success_ratio:.2f} %), Serve whole again after"
            f" {fault.recovery_s} s{'; the config was sent again' if fault.resubmitted else ''}"
        )
        lines.append(f"      {fault.pod} started {fault.pod_starts} time(s) until its Ray node joined")
        lines += [
            f"      start {start.generation} of {start.pod} failed after {start.seconds} s: {start.reason}"
            for start in fault.starts
            if not start.joined
        ]
        lines += [f"      failure: {sample}" for sample in fault.failure_samples]
    return "\n".join(lines)
