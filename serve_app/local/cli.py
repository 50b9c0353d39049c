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

The cluster's lifecycle is :mod:`serve_app.local.cluster`; the config editing, :mod:`serve_app.local.serve_config`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from serve_app.config import REPO_ROOT, SERVE_CONFIG_PATH
from serve_app.local.cluster import DEFAULT_DASHBOARD_PORT, LocalCluster, local_cluster
from serve_app.local.http_entry import HTTP_ENTRIES
from serve_app.local.serve_config import apply_overrides, default_model_id, load_serve_config

EXAMPLE_DIGIT = REPO_ROOT / "examples" / "digits" / "digit.json"


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
  gRPC API (serve_app/proto/mnist.proto, mnist_serve.v1.Mnist; and inference.GRPCInferenceService):
    {client} {EXAMPLE_DIGIT.with_name("digit-7.png")}"""


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    """SIGTERM (from a supervisor, say) stops the app like Ctrl-C does."""
    raise KeyboardInterrupt


#: ``--trace``: sample every request; no exporter path, so Serve writes spans to files.
LOCAL_TRACING = {"enabled": True, "sampling_ratio": 1.0}


def spans_dir() -> Path:
    """Where Serve's file exporter writes spans in the running local Ray session."""
    import ray

    node = ray._private.worker._global_node
    if node is None:
        raise RuntimeError("not connected to a Ray session (ray.init() first)")
    return Path(node.get_session_dir_path()) / "logs" / "serve" / "spans"


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
