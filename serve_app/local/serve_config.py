"""The Serve config as the local run, the tests and the benchmarks read and edit it (pure; no Ray imports).

The file (``charts/mnist-serve/files/serve-config.yaml``, which the chart embeds) stays the one source of
truth: these functions read it, move its ports, and change one run's deployment options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from serve_app.config import SERVE_CONFIG_PATH, AppArgs


def load_serve_config(
    path: Path = SERVE_CONFIG_PATH, http_port: int | None = None, grpc_port: int | None = None
) -> dict[str, Any]:
    """Read a Serve config file; optionally move HTTP to ``http_port`` and gRPC to ``grpc_port``."""
    config = yaml.safe_load(path.read_text())
    if http_port is not None:
        config.setdefault("http_options", {})["port"] = http_port
    if grpc_port is not None and grpc_serves(config):
        config["grpc_options"]["port"] = grpc_port
    return config


def grpc_serves(config: dict[str, Any]) -> bool:
    """Whether a Serve config serves gRPC: Serve starts a gRPC server only for servicer functions."""
    return bool((config.get("grpc_options") or {}).get("grpc_servicer_functions"))


def grpc_target_of(config: dict[str, Any]) -> str | None:
    """``127.0.0.1:<port>`` of a config's gRPC API (Serve's default port, 9000, if unset); None without one."""
    if not grpc_serves(config):
        return None
    return f"127.0.0.1:{int(config['grpc_options'].get('port', 9000))}"


def http_port_of(config: dict[str, Any]) -> int:
    """The proxy port a Serve config asks for (Serve's default, 8000, if unset)."""
    return int((config.get("http_options") or {}).get("port", 8000))


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set deployment options from ``DEPLOYMENT.key.sub=VALUE`` strings (VALUE read as YAML).

    For experiments on the local run (the load-test recipes use it): the file stays the one
    source of truth, these change one run. A deployment named in no application is an error;
    the deployment's dict gains the keys it lacks.
    """
    for override in overrides:
        target, separator, raw_value = override.partition("=")
        deployment_name, _, path = target.partition(".")
        if not separator or not path:
            raise ValueError(f"--set wants DEPLOYMENT.key=VALUE (e.g. Classifier.num_replicas=2), got {override!r}")
        deployments = [
            deployment
            for app in config["applications"]
            for deployment in app.get("deployments") or []
            if deployment.get("name") == deployment_name
        ]
        if not deployments:
            known = sorted({d["name"] for app in config["applications"] for d in app.get("deployments") or []})
            raise ValueError(f"--set {override!r}: no deployment {deployment_name!r}; known: {', '.join(known)}")
        value = yaml.safe_load(raw_value)
        *parents, leaf = path.split(".")
        for deployment in deployments:
            node = deployment
            for key in parents:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    raise ValueError(f"--set {override!r}: {key} is not a mapping")
            node[leaf] = value
    return config


def tasks_enabled(config: dict[str, Any]) -> bool:
    """Whether any application of a Serve config turns asynchronous inference on (needs Redis)."""
    return any(((app.get("args") or {}).get("tasks") or {}).get("enabled") for app in config["applications"])


def default_model_id(serve_config: dict[str, Any]) -> str:
    """The model a request naming none gets: the app's ``model_id`` arg, else the app's default."""
    args = serve_config["applications"][0].get("args") or {}
    return str(args.get("model_id", AppArgs.model_fields["model_id"].default))
