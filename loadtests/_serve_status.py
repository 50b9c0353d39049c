"""Serve's state as the load tests see it: replicas per deployment, and "full strength" (pure).

The scenarios poll the dashboard's ``GET /api/serve/applications/`` (the same document the
KubeRay operator reads) and turn each answer into a :class:`Snapshot`. A service is at *full
strength* when the dashboard answers, every deployment of the application has at least its
target number of RUNNING replicas, and every proxy is HEALTHY.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Replica:
    """One RUNNING replica."""

    replica_id: str
    deployment: str
    pid: int | None = None
    node_ip: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """Serve's state at one instant (``at``: Unix time, seconds)."""

    at: float
    reachable: bool
    running: Mapping[str, int] = field(default_factory=dict)  # deployment -> RUNNING replicas
    targets: Mapping[str, int] = field(default_factory=dict)  # deployment -> target_num_replicas
    replicas: tuple[Replica, ...] = ()
    proxies: Mapping[str, str] = field(default_factory=dict)  # proxy actor name -> status
    controller_actor_id: str | None = None
    application_status: str | None = None

    @property
    def replica_ids(self) -> frozenset[str]:
        """Ids of the RUNNING replicas."""
        return frozenset(replica.replica_id for replica in self.replicas)


def unreachable(at: float) -> Snapshot:
    """The dashboard did not answer at ``at``."""
    return Snapshot(at=at, reachable=False)


def snapshot_from_status(document: Mapping[str, Any], app_name: str, at: float) -> Snapshot:
    """A :class:`Snapshot` of one application from the dashboard's Serve status document."""
    app = (document.get("applications") or {}).get(app_name) or {}
    running: dict[str, int] = {}
    targets: dict[str, int] = {}
    replicas: list[Replica] = []
    for name, deployment in (app.get("deployments") or {}).items():
        alive = [r for r in deployment.get("replicas") or [] if r.get("state") == "RUNNING"]
        running[name] = len(alive)
        target = deployment.get("target_num_replicas")
        if isinstance(target, int):
            targets[name] = target
        replicas.extend(Replica(r["replica_id"], name, r.get("pid"), r.get("node_ip")) for r in alive)
    proxies = {
        proxy.get("actor_name") or node: proxy.get("status", "UNKNOWN")
        for node, proxy in (document.get("proxies") or {}).items()
    }
    controller = document.get("controller_info") or {}
    return Snapshot(
        at=at,
        reachable=True,
        running=running,
        targets=targets,
        replicas=tuple(replicas),
        proxies=proxies,
        controller_actor_id=controller.get("actor_id"),
        application_status=app.get("status"),
    )


def at_full_strength(snapshot: Snapshot) -> bool:
    """Dashboard up, every deployment at (or above) its target, every proxy HEALTHY."""
    if not snapshot.reachable or not snapshot.running:
        return False
    if any(snapshot.running.get(name, 0) < target for name, target in snapshot.targets.items()):
        return False
    return all(status == "HEALTHY" for status in snapshot.proxies.values())
