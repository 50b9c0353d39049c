"""Fault injectors of the fault-injection scenario: a local Ray, or a RayService on Kubernetes.

**Local** (the Locust process runs on the machine of a local Ray, e.g. ``bash scripts/serve``):

``classifier-replica``
    SIGKILL to the process of one RUNNING replica of a deployment (``Classifier`` by default),
    found with its pid in Serve's status on the dashboard. Serve starts a replacement.
``proxy``
    SIGKILL to the process of Serve's proxy actor on a node (pid from Ray's state API): the
    Python proxy, or, behind HAProxy (the default HTTP entry), the ``HAProxyManager`` actor, whose
    haproxy goes down with it. The controller replaces it; the HTTP port refuses connections
    until then.
``controller``
    SIGKILL to the Serve controller's process. Ray restarts it (it is detached, restartable);
    replicas keep serving meanwhile.

**Kubernetes** (through the ``kubernetes`` client and the current kubeconfig context):

``worker-pod``
    Deletes one Running worker pod of the release: labels ``app.kubernetes.io/instance=<release>``
    (the chart's) and ``ray.io/node-type=worker`` (KubeRay's), optionally ``ray.io/group``.
``head-pod``
    Deletes the head pod (``ray.io/node-type=head``).

Each injection returns a :class:`Fault`; :meth:`replaced` tells when its victim has been replaced
(a new pid, a new pod), which together with full strength (:mod:`_serve_status`) ends the fault.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from _serve_status import Snapshot

LOCAL_TARGETS = ("classifier-replica", "proxy", "controller")
KUBERNETES_TARGETS = ("worker-pod", "head-pod")
INSTANCE_LABEL = "app.kubernetes.io/instance"
NODE_TYPE_LABEL = "ray.io/node-type"
GROUP_LABEL = "ray.io/group"


class FaultInjectionError(RuntimeError):
    """Nothing to inject into (no replica, no pod), or the injection itself failed."""


@dataclass
class Fault:
    """One injected fault. ``at`` is Unix time (seconds); ``recovered_at`` is set once it is over."""

    number: int
    target: str
    victim: str
    at: float
    replica_ids: frozenset[str] = frozenset()  # Serve replicas the fault kills
    pid: int | None = None  # the killed process (local)
    actor_id: str | None = None  # the killed actor (local proxy, controller)
    pod_uid: str | None = None  # the deleted pod (Kubernetes)
    pods_before: int = 0  # Running pods of the victim's kind before the fault (Kubernetes)
    recovered_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def recovery_s(self) -> float | None:
        """Seconds from the fault to full strength; None while (or if never) recovered."""
        return None if self.recovered_at is None else self.recovered_at - self.at


# --- local -----------------------------------------------------------------------------------


class LocalInjector:
    """Kills Serve's processes on this machine, found through the dashboard."""

    def __init__(self, dashboard: Any, app_name: str, deployment: str = "Classifier", seed: int | None = None) -> None:
        self.dashboard = dashboard
        self.app_name = app_name
        self.deployment = deployment
        self.rng = random.Random(seed)

    def inject(self, target: str, number: int, snapshot: Snapshot) -> Fault:
        """Kill one ``target`` (see the module's documentation)."""
        if target == "classifier-replica":
            return self._kill_replica(number, snapshot)
        if target in ("proxy", "controller"):
            return self._kill_actor(target, number)
        raise FaultInjectionError(f"unknown local fault target {target!r}; known: {', '.join(LOCAL_TARGETS)}")

    def _kill_replica(self, number: int, snapshot: Snapshot) -> Fault:
        candidates = [r for r in snapshot.replicas if r.deployment == self.deployment and r.pid]
        if not candidates:
            raise FaultInjectionError(f"no RUNNING {self.deployment} replica with a pid to kill")
        victim = self.rng.choice(candidates)
        _kill(victim.pid)
        return Fault(
            number=number,
            target="classifier-replica",
            victim=f"{self.deployment} replica {victim.replica_id} (pid {victim.pid})",
            at=time.time(),
            replica_ids=frozenset({victim.replica_id}),
            pid=victim.pid,
        )

    def _actor_ids(self, target: str) -> list[str]:
        status = self.dashboard.status()
        if target == "controller":
            return [actor_id] if (actor_id := (status.get("controller_info") or {}).get("actor_id")) else []
        return [proxy["actor_id"] for proxy in (status.get("proxies") or {}).values() if proxy.get("actor_id")]

    def _kill_actor(self, target: str, number: int) -> Fault:
        actor_ids = self._actor_ids(target)
        if not actor_ids:
            raise FaultInjectionError(f"no Serve {target} found on the dashboard")
        actor_id = self.rng.choice(actor_ids)
        actor = self.dashboard.actor(actor_id) or {}
        pid = actor.get("pid")
        if actor.get("state") != "ALIVE" or not pid:
            raise FaultInjectionError(f"the {target} actor {actor_id} is not alive with a pid: {actor}")
        _kill(int(pid))
        return Fault(
            number=number,
            target=target,
            victim=f"Serve {target} {actor.get('name') or actor_id} (pid {pid})",
            at=time.time(),
            pid=int(pid),
            actor_id=actor_id,
        )

    def replaced(self, fault: Fault, snapshot: Snapshot) -> bool:
        """Whether the killed replica is gone from Serve, or the killed actor runs again (new pid)."""
        if fault.target == "classifier-replica":
            return snapshot.reachable and not (fault.replica_ids & snapshot.replica_ids)
        if not snapshot.reachable:
            return False
        # The controller restarts under the same actor id; a proxy may come back as a new actor.
        for actor_id in self._actor_ids(fault.target):
            actor = self.dashboard.actor(actor_id) or {}
            if actor.get("state") != "ALIVE" or actor.get("pid") in (None, fault.pid):
                return False
        return True


def _kill(pid: int) -> None:
    """SIGKILL ``pid``: an abrupt crash, no graceful shutdown."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError as error:
        raise FaultInjectionError(f"process {pid} is already gone") from error
    except PermissionError as error:
        raise FaultInjectionError(f"not allowed to kill process {pid}: run as the user of the local Ray") from error


# --- Kubernetes --------------------------------------------------------------------------------


def pod_selector(release: str, node_type: str | None = None, group: str | None = None) -> dict[str, str]:
    """Labels of the release's Ray pods of one node type (and worker group); None: every pod of the release."""
    if node_type not in (None, "head", "worker"):
        raise ValueError(f"node_type is head, worker or None, got {node_type!r}")
    selector = {INSTANCE_LABEL: release}
    if node_type:
        selector[NODE_TYPE_LABEL] = node_type
    if group:
        selector[GROUP_LABEL] = group
    return selector


def selector_string(selector: Mapping[str, str]) -> str:
    """A label selector for the Kubernetes API: ``key=value,...``."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))


def matches(labels: Mapping[str, str] | None, selector: Mapping[str, str]) -> bool:
    """Whether ``labels`` carry every ``key=value`` of ``selector`` (what the API server does)."""
    labels = labels or {}
    return all(labels.get(key) == value for key, value in selector.items())


def is_running(pod: Mapping[str, Any]) -> bool:
    """A pod (as a dict, API field names) that is Running and not being deleted."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and not metadata.get("deletionTimestamp")


def is_ready(pod: Mapping[str, Any]) -> bool:
    """A Running pod whose ``Ready`` condition is True (its readiness probes pass)."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return is_running(pod) and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def eligible_pods(
    pods: Iterable[Mapping[str, Any]], selector: Mapping[str, str], ready_only: bool = False
) -> list[Mapping[str, Any]]:
    """The Running (or Ready) pods that ``selector`` selects, by name (a stable order to choose from)."""
    keep = is_ready if ready_only else is_running
    chosen = [pod for pod in pods if matches((pod.get("metadata") or {}).get("labels"), selector) and keep(pod)]
    return sorted(chosen, key=lambda pod: pod["metadata"]["name"])


class KubernetesInjector:
    """Deletes pods of a RayService installed by the chart (``kubectl delete pod``, through the API)."""

    def __init__(
        self,
        namespace: str,
        release: str,
        group: str | None = None,
        grace_period_s: int | None = None,
        context: str | None = None,
        seed: int | None = None,
    ) -> None:
        from kubernetes import client, config  # only the Kubernetes back end needs the client

        try:
            config.load_kube_config(context=context)
        except config.ConfigException:
            config.load_incluster_config()
        self.api = client.CoreV1Api()
        self.namespace = namespace
        self.release = release
        self.group = group
        self.grace_period_s = grace_period_s
        self.rng = random.Random(seed)

    def _pods(self, selector: Mapping[str, str], ready_only: bool = False) -> list[Mapping[str, Any]]:
        listed = self.api.list_namespaced_pod(self.namespace, label_selector=selector_string(selector))
        pods = [self.api.api_client.sanitize_for_serialization(pod) for pod in listed.items]
        return eligible_pods(pods, selector, ready_only=ready_only)

    def _selector(self, target: str) -> dict[str, str]:
        if target == "worker-pod":
            return pod_selector(self.release, "worker", self.group)
        if target == "head-pod":
            return pod_selector(self.release, "head")
        raise FaultInjectionError(f"unknown Kubernetes fault target {target!r}; known: {', '.join(KUBERNETES_TARGETS)}")

    def inject(self, target: str, number: int, snapshot: Snapshot) -> Fault:
        """Delete one pod of ``target``'s kind, chosen at random among the Running ones."""
        selector = self._selector(target)
        pods = self._pods(selector)
        if not pods:
            raise FaultInjectionError(f"no Running pod in {self.namespace} matches {selector_string(selector)}")
        pod = self.rng.choice(pods)
        name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
        pod_ip = (pod.get("status") or {}).get("podIP")
        body = None if self.grace_period_s is None else {"gracePeriodSeconds": self.grace_period_s}
        self.api.delete_namespaced_pod(name, self.namespace, body=body)
        return Fault(
            number=number,
            target=target,
            victim=f"pod {self.namespace}/{name}",
            at=time.time(),
            replica_ids=frozenset(r.replica_id for r in snapshot.replicas if pod_ip and r.node_ip == pod_ip),
            pod_uid=uid,
            pods_before=len(pods),
        )

    def replaced(self, fault: Fault, snapshot: Snapshot) -> bool:
        """As many Ready pods of the kind as before, the deleted one not among them, its replicas gone."""
        if not snapshot.reachable or fault.replica_ids & snapshot.replica_ids:
            return False
        pods = self._pods(self._selector(fault.target), ready_only=True)
        return len(pods) >= fault.pods_before and all(pod["metadata"]["uid"] != fault.pod_uid for pod in pods)
