"""One real local Ray for the whole session, with the app deployed from charts/mnist-serve/files/serve-config.yaml.

The config is deployed through the dashboard's REST API, exactly as the KubeRay
operator deploys a RayService's serveConfigV2 (JSON body, token header). Only the
HTTP and gRPC ports are changed, to free ones, so a developer's running app is left alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray
import requests
from prometheus_client.parser import text_string_to_metric_families
from ray import serve

from serve_app.config import APP_NAME, SERVE_CONFIG_PATH
from serve_app.local.cluster import local_cluster
from serve_app.local.dashboard import DashboardClient, read_auth_token
from serve_app.local.ports import free_port
from serve_app.local.serve_config import load_serve_config
from serve_app.model import SIMULATED_GPUS_ENV


@dataclass(frozen=True)
class LocalServe:
    """The deployed app: its HTTP base URL, the dashboard client that deployed it, Ray's metrics."""

    base_url: str
    dashboard: DashboardClient
    serve_config: dict
    metrics_url: str
    session_dir: Path
    http_entry: str  # haproxy or proxy (serve_app.local.http_entry)
    grpc_target: str  # host:port of the gRPC API

    def scrape(self, name: str, **labels: str) -> float:
        """Sum of the samples of one metric (e.g. ``ray_mnist_requests_total``) matching ``labels``."""
        text = requests.get(self.metrics_url, timeout=30).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def settled(self, name: str, **labels: str) -> float:
        """A metric's value once everything recorded so far is exported (two equal scrapes an export apart)."""
        value = self.scrape(name, **labels)
        for _ in range(10):
            time.sleep(METRICS_EXPORT_PERIOD_S)
            again = self.scrape(name, **labels)
            if again == value:
                return value
            value = again
        return value

    def wait_for_metric(self, name: str, expected: float, timeout_s: float = 60, **labels: str) -> float:
        """Poll until a metric reaches ``expected`` (Ray exports every few seconds); return the last value."""
        deadline = time.monotonic() + timeout_s
        value = self.scrape(name, **labels)
        while value < expected and time.monotonic() < deadline:
            time.sleep(1)
            value = self.scrape(name, **labels)
        return value

    def post(self, path: str, **kwargs) -> requests.Response:
        """POST to the app, with a generous timeout."""
        return requests.post(self.base_url + path, timeout=60, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        """GET from the app."""
        return requests.get(self.base_url + path, timeout=60, **kwargs)

    def replica_pids(self) -> dict[str, list[int]]:
        """Deployment -> sorted pids of its RUNNING replicas (a restart changes them)."""
        app = self.dashboard.status()["applications"][APP_NAME]
        return {
            name: sorted(r["pid"] for r in deployment["replicas"] if r["state"] == "RUNNING")
            for name, deployment in app["deployments"].items()
        }


#: Ray exports application metrics to its Prometheus endpoint about this often, in seconds.
METRICS_EXPORT_PERIOD_S = 6

#: Tracing on for the test cluster (off in the project's config): every request is sampled and
#: Serve's built-in exporter writes the spans to files in the session's logs.
TEST_TRACING = {"enabled": True, "sampling_ratio": 1.0}

#: Logical resources of the shared test cluster, shaped like the chart's cpu-only scenario: a
#: "GPU" to pack fractional Classifier replicas on (as KubeRay's simulated GPU group advertises),
#: the CPU group's custom resource, and 4 logical CPUs. Logical: nothing runs on a GPU.
TEST_CLUSTER_RESOURCES = {"num_cpus": 4, "num_gpus": 1, "resources": {"mnist_cpu_pool": 1000}}
#: ... and, like the chart's simulated GPU group, the environment that lets a GPU share run on the CPU.
TEST_CLUSTER_ENV = {SIMULATED_GPUS_ENV: "1"}


def pin_classifier_to_one_replica(config: dict) -> None:
    """Test-only: one Classifier replica for the whole session.

    Tests of per-replica state (model cache, metrics of one process, replica pids) need a replica
    that autoscaling neither adds to nor removes; test_control.py deploys the project's own
    autoscaling (scale from zero) on purpose.
    """
    for app in config["applications"]:
        for deployment in app["deployments"]:
            if deployment["name"] == "Classifier":
                deployment.pop("autoscaling_config", None)
                deployment["num_replicas"] = 1


@pytest.fixture(scope="session")
def local_serve() -> Iterator[LocalServe]:
    """A real local Ray with the app deployed from the project's config through the operator's REST path."""
    config = load_serve_config(SERVE_CONFIG_PATH, http_port=free_port(), grpc_port=free_port())
    config["tracing_config"] = TEST_TRACING
    pin_classifier_to_one_replica(config)
    metrics_port = free_port()
    with local_cluster(
        config,
        dashboard_port=free_port(),
        log_to_driver=False,
        ray_env=TEST_CLUSTER_ENV,
        _metrics_export_port=metrics_port,
        **TEST_CLUSTER_RESOURCES,
    ) as cluster:
        assert read_auth_token(), "Ray 2.60 turns token auth on for a local cluster; no token found"
        session_dir = Path(ray._private.worker._global_node.get_session_dir_path())
        yield LocalServe(
            cluster.http_url,
            cluster.dashboard,
            config,
            f"http://127.0.0.1:{metrics_port}/metrics",
            session_dir,
            cluster.http_entry,
            cluster.grpc_target,
        )


@pytest.fixture(scope="session")
def app_handle(local_serve: LocalServe):
    """A DeploymentHandle to the app's ingress, as the tutorial's handle calls use."""
    return serve.get_app_handle(APP_NAME)
