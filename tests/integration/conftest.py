"""One real local Ray for the whole session, with the app deployed from config/serve.yaml.

The config is deployed through the dashboard's REST API, exactly as the KubeRay
operator deploys a RayService's serveConfigV2 (JSON body, token header). Only the
HTTP port is changed, to a free one, so a developer's running app is left alone.
"""

from __future__ import annotations

import copy
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import ray
import requests
import yaml
from ray import serve

from serve_app.config import APP_NAME, SERVE_CONFIG_PATH
from serve_app.dashboard import DashboardClient, read_auth_token


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class LocalServe:
    """The deployed app: its HTTP base URL and the dashboard client that deployed it."""

    base_url: str
    dashboard: DashboardClient
    serve_config: dict

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


def local_serve_config(http_port: int) -> dict:
    """config/serve.yaml with only the proxy port changed."""
    config = copy.deepcopy(yaml.safe_load(SERVE_CONFIG_PATH.read_text()))
    config["http_options"]["port"] = http_port
    return config


@pytest.fixture(scope="session")
def local_ray() -> Iterator[str]:
    """A real local Ray cluster (token auth on, as Ray 2.60 defaults); yields the dashboard URL."""
    dashboard_port = free_port()
    context = ray.init(include_dashboard=True, dashboard_port=dashboard_port, namespace="serve", log_to_driver=False)
    try:
        yield f"http://{context.dashboard_url}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="session")
def local_serve(local_ray: str) -> LocalServe:
    """The app deployed from the project's Serve config through the operator's REST path."""
    token = read_auth_token()
    assert token, "Ray 2.60 turns token auth on for a local cluster; no token found"
    dashboard = DashboardClient(local_ray, token=token)
    config = local_serve_config(free_port())
    dashboard.deploy(config)
    dashboard.wait_until_running([APP_NAME], timeout_s=300)
    return LocalServe(f"http://127.0.0.1:{config['http_options']['port']}", dashboard, config)


@pytest.fixture(scope="session")
def app_handle(local_serve: LocalServe):
    """A DeploymentHandle to the app's ingress, as the tutorial's handle calls use."""
    return serve.get_app_handle(APP_NAME)
