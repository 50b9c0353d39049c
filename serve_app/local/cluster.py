"""A local Ray with the Serve config deployed the way KubeRay deploys ``serveConfigV2``.

:func:`local_cluster` starts a local Ray with its dashboard, then ``PUT
/api/serve/applications/`` with the config as JSON and Ray's auth token, then ``GET
...?api_type=declarative`` until every application is RUNNING; on leaving, Serve, then Ray shut
down. The command line (:mod:`serve_app.local.cli`), the tests and the benchmarks all start the app
through it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from serve_app.grpc_api import DEFAULT_GRPC_MAX_MESSAGE_BYTES, GRPC_MAX_MESSAGE_ENV
from serve_app.local.dashboard import DashboardClient, read_auth_token
from serve_app.local.http_entry import default_http_entry, environment, ray_environment
from serve_app.local.ports import free_port
from serve_app.local.redis_local import local_redis
from serve_app.local.serve_config import grpc_target_of, http_port_of, tasks_enabled
from serve_app.tasks import REDIS_URL_ENV

DEFAULT_DASHBOARD_PORT = 8265
STARTUP_TIMEOUT_S = 300


@dataclass(frozen=True)
class LocalCluster:
    """A running local deployment: where to send requests, and its dashboard client."""

    http_url: str
    #: ``host:port`` of the gRPC API; None when the config serves no gRPC.
    grpc_target: str | None
    dashboard_url: str
    dashboard: DashboardClient
    serve_config: dict[str, Any]
    http_entry: str


@contextmanager
def redis_for(config: dict[str, Any]) -> Iterator[str | None]:
    """A local Redis at $MNIST_SERVE_REDIS_URL when the config needs one and none is given; else nothing."""
    if not tasks_enabled(config) or os.environ.get(REDIS_URL_ENV):
        yield os.environ.get(REDIS_URL_ENV)
        return
    with local_redis() as url:
        os.environ[REDIS_URL_ENV] = url  # Ray's processes inherit it
        print(f"asynchronous inference: started a local redis-server at {url}", flush=True)
        try:
            yield url
        finally:
            os.environ.pop(REDIS_URL_ENV, None)


#: How long a stopping replica or proxy stays draining in a local run, in seconds. Serve's default
#: (30 s) gives a cluster's load balancers time to stop sending; on one machine HAProxy notices at
#: once, and Ctrl-C should not wait half a minute. The chart keeps Serve's default.
LOCAL_DRAIN_S = 2
#: Environment of every local Ray process, besides the HTTP entry's (Serve reads it at start-up).
SERVE_PROCESS_ENV = {
    GRPC_MAX_MESSAGE_ENV: str(DEFAULT_GRPC_MAX_MESSAGE_BYTES),
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(LOCAL_DRAIN_S),
    "RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S": str(LOCAL_DRAIN_S),
}


@contextmanager
def sigint_ignored_by_children() -> Iterator[None]:
    """Ray's processes started in the block ignore SIGINT (the disposition is inherited).

    Ctrl-C in a terminal signals the whole foreground process group: without this, Ray's GCS and
    raylet die with the driver's first breath, and the driver's orderly shutdown (Serve, then HAProxy,
    then Ray) hangs waiting for them. The driver itself keeps its own handler.
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def local_cluster(
    serve_config: dict[str, Any],
    dashboard_port: int = DEFAULT_DASHBOARD_PORT,
    log_to_driver: bool = True,
    timeout_s: float = STARTUP_TIMEOUT_S,
    http_entry: str | None = None,
    ray_env: Mapping[str, str] | None = None,
    **ray_init_kwargs: Any,
) -> Iterator[LocalCluster]:
    """Start a local Ray, deploy ``serve_config`` through the dashboard, yield it, shut it all down.

    ``http_entry`` is HAProxy or Serve's proxy (:mod:`serve_app.local.http_entry`; default
    :func:`~serve_app.local.http_entry.default_http_entry`); ``ray_env`` adds environment variables for
    Ray's processes on top of the entry's. ``ray_init_kwargs`` go to ``ray.init`` (e.g. logical
    ``num_gpus``/``resources`` that mimic a cluster's worker groups).
    """
    entry = http_entry or default_http_entry()
    serve_env = ray_environment(entry, free_port(), free_port()) | SERVE_PROCESS_ENV
    with (
        environment(serve_env | dict(ray_env or {})),
        redis_for(serve_config),
    ):
        yield from _deployed(serve_config, dashboard_port, log_to_driver, timeout_s, entry, ray_init_kwargs)


def _deployed(
    serve_config: dict[str, Any],
    dashboard_port: int,
    log_to_driver: bool,
    timeout_s: float,
    http_entry: str,
    ray_init_kwargs: dict[str, Any],
) -> Iterator[LocalCluster]:
    """The body of :func:`local_cluster`, once the environment is set: Ray up, config deployed."""
    import ray
    from ray import serve

    with sigint_ignored_by_children():
        context = ray.init(
            include_dashboard=True,
            dashboard_port=dashboard_port,
            namespace="serve",
            log_to_driver=log_to_driver,
            **ray_init_kwargs,
        )
    try:
        dashboard_url = f"http://{context.dashboard_url}"
        dashboard = DashboardClient(dashboard_url, token=read_auth_token())
        dashboard.deploy(serve_config)
        apps = [app["name"] for app in serve_config["applications"]]
        dashboard.wait_until_running(apps, timeout_s=timeout_s)
        yield LocalCluster(
            http_url=f"http://127.0.0.1:{http_port_of(serve_config)}",
            grpc_target=grpc_target_of(serve_config),
            dashboard_url=dashboard_url,
            dashboard=dashboard,
            serve_config=serve_config,
            http_entry=http_entry,
        )
    finally:
        began = time.monotonic()
        print(f"stopping: draining Serve's replicas and HTTP entry (at least {LOCAL_DRAIN_S} s) ...", flush=True)
        serve.shutdown()
        print(f"stopping: Serve is down after {time.monotonic() - began:.0f} s; stopping Ray ...", flush=True)
        ray.shutdown()
