"""Running the app on this machine: tooling that runs in the driver, never in a replica.

- :mod:`~serve_app.local.cli`: ``python -m serve_app.local`` (or ``mnist-serve``), the embedded default.
- :mod:`~serve_app.local.cluster`: a local Ray with the Serve config deployed as KubeRay deploys it.
- :mod:`~serve_app.local.serve_config`: reading the Serve config and changing it for one run.
- :mod:`~serve_app.local.dashboard`: the dashboard's REST API (deploy, wait until RUNNING).
- :mod:`~serve_app.local.http_entry`: HAProxy or Serve's proxy on the HTTP port.
- :mod:`~serve_app.local.ports`, :mod:`~serve_app.local.processes`, :mod:`~serve_app.local.redis_local`:
  free ports, helper processes, a local ``redis-server`` for asynchronous inference.
"""
