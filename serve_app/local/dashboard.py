"""A small client for the Ray dashboard's Serve REST API, as the KubeRay operator uses it.

The operator deploys a RayService's ``serveConfigV2`` with
``PUT /api/serve/applications/`` (the config as JSON) and reads status with
``GET /api/serve/applications/?api_type=declarative``. With Ray's token
authentication on (the default for a local cluster in Ray 2.60, and what the
chart turns on), every call carries ``x-ray-authorization: Bearer <token>``.
The tests and the load-test reports use this client the same way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import requests

DEFAULT_DASHBOARD_URL = "http://127.0.0.1:8265"
APPLICATIONS_PATH = "/api/serve/applications/"
ACTORS_PATH = "/api/v0/actors"  # Ray's state API


class DeployFailedError(RuntimeError):
    """An application reached DEPLOY_FAILED, or did not reach RUNNING in time."""


def read_auth_token() -> str | None:
    """Ray's auth token, looked up as Ray does: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    return path.read_text().strip() if path.is_file() else None


def auth_headers(token: str | None) -> dict[str, str]:
    """The header the KubeRay operator sends when token auth is on."""
    return {"x-ray-authorization": f"Bearer {token}"} if token else {}


class DashboardClient:
    """Deploy Serve configs and read their status through the dashboard."""

    def __init__(self, url: str = DEFAULT_DASHBOARD_URL, token: str | None = None, timeout_s: float = 30) -> None:
        self.url = url.rstrip("/")
        self.headers = auth_headers(token)
        self.timeout_s = timeout_s

    def deploy(self, serve_config: dict[str, Any]) -> None:
        """PUT a whole Serve config (every application), exactly as the operator does."""
        response = requests.put(
            self.url + APPLICATIONS_PATH, json=serve_config, headers=self.headers, timeout=self.timeout_s
        )
        if response.status_code != 200:
            raise DeployFailedError(f"PUT {APPLICATIONS_PATH} answered {response.status_code}: {response.text}")

    def status(self) -> dict[str, Any]:
        """The declarative status document (``applications`` keyed by name)."""
        response = requests.get(
            self.url + APPLICATIONS_PATH,
            params={"api_type": "declarative"},
            headers=self.headers,
            timeout=self.timeout_s,
        )
        response.raise_for_status()
        return response.json()

    def actor(self, actor_id: str) -> dict[str, Any] | None:
        """One actor from Ray's state API (``state``, ``pid``, ``num_restarts``...); None when unknown."""
        response = requests.get(
            self.url + ACTORS_PATH,
            params={
                "detail": "1",
                "filter_keys": "actor_id",
                "filter_predicates": "=",
                "filter_values": actor_id,
            },
            headers=self.headers,
            timeout=self.timeout_s,
        )
        response.raise_for_status()
        actors = ((response.json().get("data") or {}).get("result") or {}).get("result") or []
        return actors[0] if actors else None

    def application_statuses(self) -> dict[str, str]:
        """Application name -> status (DEPLOYING, RUNNING, DEPLOY_FAILED, ...)."""
        return {name: app["status"] for name, app in (self.status().get("applications") or {}).items()}

    def running_replicas(self, app_name: str) -> dict[str, int]:
        """Deployment name -> number of RUNNING replicas of one application."""
        app = (self.status().get("applications") or {}).get(app_name) or {}
        return {
            name: sum(1 for replica in deployment.get("replicas", []) if replica.get("state") == "RUNNING")
            for name, deployment in (app.get("deployments") or {}).items()
        }

    def wait_until_running(self, app_names: list[str], timeout_s: float = 300, poll_s: float = 1) -> None:
        """Block until every named application is RUNNING; fail fast on DEPLOY_FAILED."""
        deadline = time.monotonic() + timeout_s
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            document = self.status()
            applications = document.get("applications") or {}
            statuses = {name: app["status"] for name, app in applications.items()}
            failed = {
                name: applications[name].get("message", "")
                for name in app_names
                if statuses.get(name) == "DEPLOY_FAILED"
            }
            if failed:
                raise DeployFailedError(f"deploy failed: {failed}")
            if all(statuses.get(name) == "RUNNING" for name in app_names):
                return
            time.sleep(poll_s)
        raise DeployFailedError(f"not RUNNING after {timeout_s} s: {statuses}")
