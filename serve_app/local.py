"""The embedded default: serve the whole graph on a local Ray (CPU).

    python -m serve_app.local                    # or: mnist-serve
    python -m serve_app.local --config my.yaml --dashboard-port 8266
    python -m serve_app.local --trace            # every request traced, spans written to files
    python -m serve_app.local --http-entry proxy # Serve's Python proxy on the HTTP port instead of HAProxy
    python -m serve_app.local --grpc-port 9001   # the gRPC API on another port than the config's 9000
    python -m serve_app.local --set Classifier.autoscaling_config.min_replicas=2   # a deployment option

Starts a local Ray with its dashboard, then deploys the Serve config the way the
KubeRay operator deploys a RayService's ``serveConfigV2``: ``PUT
/api/serve/applications/`` with the config as JSON and Ray's auth token, then
``GET ...?api_type=declarative`` until every application is RUNNING. Prints a
curl line that works as printed; Ctrl-C (or SIGTERM) shuts Serve and Ray down.

The tests and the benchmarks start the app through :func:`local_cluster` too.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from serve_app.config import REPO_ROOT, SERVE_CONFIG_PATH, AppArgs
from serve_app.dashboard import DashboardClient, read_auth_token
from serve_app.grpc_api import DEFAULT_GRPC_MAX_MESSAGE_BYTES, GRPC_MAX_MESSAGE_ENV
from serve_app.http_entry import HTTP_ENTRIES, default_http_entry, environment, ray_environment
from serve_app.ports import free_port
from serve_app.redis_local import local_redis
from serve_app.tasks import REDIS_URL_ENV

EXAMPLE_DIGIT = REPO_ROOT / "examples" / "digits" / "digit.json"
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


def http_port_of(config: dict[str, Any]) -> int:
    """The proxy port a Serve config asks for (Serve's default, 8000, if unset)."""
    return int((config.get("http_options") or {}).get("port", 8000))


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

    ``http_entry`` is HAProxy or Serve's proxy (:mod:`serve_app.http_entry`; default
    :func:`~serve_app.http_entry.default_http_entry`); ``ray_env`` adds environment variables for
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


ENTRY_WORDS = {"haproxy": "HAProxy (--http-entry proxy for Serve's proxy)", "proxy": "Serve's proxy"}


def banner(cluster: LocalCluster) -> str:
    """What to tell the user once the app answers."""
    base = cluster.http_url.replace("127.0.0.1", "localhost")
    return f"""
mnist-serve is up on a local Ray (CPU), HTTP entry: {ENTRY_WORDS[cluster.http_entry]}.
One Classifier replica is running; after 5 idle minutes it scales to zero, and the next request
then waits about 10 s for a new one.

  classify a real digit (a 7):
    curl -s -X POST {base}/predict -H 'Content-Type: application/json' -d @{EXAMPLE_DIGIT}
  upload images:
    curl -s -X POST {base}/predict/image -F files=@{EXAMPLE_DIGIT.with_name("digit-3.png")}
  asynchronous (answers a task id; then GET {base}/tasks/<id>):
    curl -s -X POST {base}/tasks -H 'Content-Type: application/json' -d @{EXAMPLE_DIGIT}
  API docs:        {base}/docs
  health:          {base}/healthz
  Open Inference Protocol (KServe V2, for KServe and Triton clients): {base}/v2/models/<model>/infer
    curl -s {base}/v2/models/{default_model_id(cluster.serve_config)}{grpc_lines(cluster.grpc_target)}
  Ray dashboard:   {cluster.dashboard_url}

Press Ctrl-C to stop.
"""


def default_model_id(serve_config: dict[str, Any]) -> str:
    """The model a request naming none gets: the app's ``model_id`` arg, else the app's default."""
    args = serve_config["applications"][0].get("args") or {}
    return str(args.get("model_id", AppArgs.model_fields["model_id"].default))


def this_python() -> str:
    """The running interpreter as a user can type it (``.venv/bin/python`` from the repository).

    Relative to the working directory when inside it, else absolute: the environment that has the
    gRPC client's dependencies, where a bare ``python`` may not.
    """
    path = Path(sys.executable)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def grpc_lines(target: str | None) -> str:
    """The banner's lines for the gRPC API (none when the config serves no gRPC)."""
    if target is None:
        return ""
    client = f"{this_python()} -m serve_app.grpc_client --target {target.replace('127.0.0.1', 'localhost')}"
    return f"""
  gRPC API (serve_app/mnist.proto, mnist_serve.v1.Mnist; and inference.GRPCInferenceService):
    {client} {EXAMPLE_DIGIT.with_name("digit-7.png")}"""


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    """SIGTERM (from a supervisor, say) stops the app like Ctrl-C does."""
    raise KeyboardInterrupt


#: ``--trace``: sample every request; no exporter path, so Serve writes spans to files.
LOCAL_TRACING = {"enabled": True, "sampling_ratio": 1.0}


def spans_dir() -> Path:
    """Where Serve's file exporter writes spans in the running local Ray session."""
    import ray

    return Path(ray._private.worker._global_node.get_session_dir_path()) / "logs" / "serve" / "spans"


def run(
    config_path: Path,
    dashboard_port: int,
    http_port: int | None,
    trace: bool = False,
    overrides: list[str] | None = None,
    http_entry: str | None = None,
    grpc_port: int | None = None,
) -> int:
    """Serve until Ctrl-C or SIGTERM; return the exit code."""
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even if started with SIGINT ignored
    config = apply_overrides(load_serve_config(config_path, http_port, grpc_port), overrides or [])
    if trace:
        config["tracing_config"] = LOCAL_TRACING
    print(f"starting a local Ray and deploying {config_path} ...", flush=True)
    try:
        with local_cluster(config, dashboard_port=dashboard_port, http_entry=http_entry) as cluster:
            # ray.init() replaced the handler with Ray's own, which exits without leaving the
            # with-block (no Serve shutdown, the local redis-server left running): take it back.
            signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
            print(banner(cluster), flush=True)
            if trace:
                print(f"Tracing every request; spans (JSON) are written to {spans_dir()}\n", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopped: Serve and the local Ray are shut down.", flush=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=SERVE_CONFIG_PATH, help="a Serve config file")
    parser.add_argument("--dashboard-port", type=int, default=DEFAULT_DASHBOARD_PORT)
    parser.add_argument("--http-port", type=int, default=None, help="override the config's http_options.port")
    parser.add_argument("--grpc-port", type=int, default=None, help="override the config's grpc_options.port")
    parser.add_argument("--trace", action="store_true", help="trace every request; spans go to files")
    parser.add_argument(
        "--http-entry",
        choices=HTTP_ENTRIES,
        default=None,
        help="what listens on the HTTP port: HAProxy in front of the Ingress replicas (default, or "
        "$MNIST_SERVE_HTTP_ENTRY) or Serve's Python proxy",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="DEPLOYMENT.KEY=VALUE",
        help="change a deployment option for this run, e.g. Classifier.autoscaling_config.max_replicas=4 (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        apply_overrides(load_serve_config(args.config.resolve()), args.overrides)  # bad --set: usage error
    except ValueError as error:
        parser.error(str(error))
    sys.exit(
        run(
            args.config.resolve(),
            args.dashboard_port,
            args.http_port,
            args.trace,
            args.overrides,
            http_entry=args.http_entry,
            grpc_port=args.grpc_port,
        )
    )


if __name__ == "__main__":
    main()
