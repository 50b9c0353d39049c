"""Steady load through a pod's serve port, and pod kills measured against it.

:class:`SteadyLoad` keeps a few clients sending real MNIST digits to ``POST /predict`` and records
every answer (a 200 with the right labels counts as a success; any other status, a wrong label or
a transport error as a failure). :func:`kill_and_recover` kills every process of one pod under
that load, starts the pod again after ``restart_delay_s`` (as KubeRay replaces a pod), and
measures how long until Serve is whole again and how many requests failed meanwhile.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import requests

from tools.multinode.cluster import PodStart, RenderedCluster

#: Deployments on the request path: each must keep a replica through the loss of any one pod in HA.
REQUEST_PATH = ("Ingress", "Preprocessor", "Classifier")


@dataclass(frozen=True)
class Outcome:
    """One request: when it started and ended (monotonic seconds), and whether it succeeded."""

    started: float
    ended: float
    ok: bool
    detail: str = ""


@dataclass
class SteadyLoad:
    """``clients`` threads posting real digits to ``url()`` (re-read per request) until stopped."""

    url: Callable[[], str]
    images: np.ndarray
    labels: np.ndarray
    clients: int = 4
    digits_per_request: int = 1
    timeout_s: float = 30.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _client(self, index: int) -> None:
        session = requests.Session()
        position = index
        while not self._stop.is_set():
            chosen = [(position + k) % len(self.images) for k in range(self.digits_per_request)]
            position += self.digits_per_request
            body = json.dumps({"image": self.images[chosen].tolist()})
            started = time.monotonic()
            try:
                response = session.post(
                    self.url() + "/predict",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=self.timeout_s,
                )
                expected = [int(self.labels[i]) for i in chosen]
                ok = response.status_code == 200 and response.json().get("predicted_label") == expected
                detail = "" if ok else f"{response.status_code} {response.text[:160]}"
            except (requests.RequestException, ValueError) as error:
                ok, detail = False, f"{type(error).__name__}: {str(error)[:160]}"
            self.outcomes.append(Outcome(started, time.monotonic(), ok, detail))

    def start(self) -> SteadyLoad:
        """Start the clients."""
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop the clients (each finishes its request in flight)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 5)

    def between(self, begin: float, end: float) -> list[Outcome]:
        """Requests that started in [begin, end)."""
        return [o for o in list(self.outcomes) if begin <= o.started < end]


def spread(cluster: RenderedCluster, deployments: tuple[str, ...] = REQUEST_PATH) -> dict[str, set[str]]:
    """Deployment -> the pods its RUNNING replicas are on."""
    pods: dict[str, set[str]] = {name: set() for name in deployments}
    for replica in cluster.replicas():
        if replica.deployment in pods and replica.state == "RUNNING":
            pods[replica.deployment].add(replica.pod)
    return pods


@dataclass(frozen=True)
class FaultReport:
    """One pod killed under load: when it came back, and what the clients saw meanwhile."""

    fault: str
    pod: str
    entry: str
    requests: int
    failures: int
    success_ratio: float
    recovery_s: float
    resubmitted: bool
    failure_samples: list[str]
    #: Every start of a pod between the kill and recovery: the killed pod's replacements (a head
    #: can take more than one when the recovering GCS is slow) and any pod that failed meanwhile.
    starts: list[PodStart] = field(default_factory=list)

    @property
    def pod_starts(self) -> int:
        """Starts of the killed pod until its Ray node joined (1: the first replacement came up)."""
        return sum(1 for start in self.starts if start.pod == self.pod)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (with ``pod_starts``)."""
        return {**asdict(self), "pod_starts": self.pod_starts}


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.5) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passes; whether it became true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return False


def joined_when_whole(cluster: RenderedCluster, starts: list[PodStart]) -> list[PodStart]:
    """The starts, with each pod's last one marked joined when the pod is alive once Serve is whole."""
    last = {start.pod: index for index, start in enumerate(starts)}
    return [
        replace(start, joined=True) if last[start.pod] == index and cluster.pods[start.pod].alive() else start
        for index, start in enumerate(starts)
    ]


def kill_and_recover(
    cluster: RenderedCluster,
    pod: str,
    load: SteadyLoad,
    fault: str,
    entry: str,
    restart_delay_s: float = 5.0,
    min_pods_per_deployment: int = 1,
    timeout_s: float = 300.0,
    settle_s: float = 5.0,
) -> FaultReport:
    """Kill ``pod`` under ``load``, start it again after ``restart_delay_s``, wait until Serve is whole.

    Whole: every application RUNNING, every deployment with all its target replicas RUNNING, and
    each request-path deployment's replicas on at least ``min_pods_per_deployment`` pods. If the
    applications are gone after a head restart (no GCS fault tolerance), the config is sent again,
    as the operator does, and the report says so. A pod that fails to start meanwhile (the head
    whose Ray times out waiting for the recovering GCS, say) is replaced, as KubeRay replaces a
    failed pod, and every start is in the report; the recovery time runs from the kill to whole,
    however many starts it took.
    """
    killed_at = time.monotonic()
    cluster.kill_pod(pod)
    time.sleep(restart_delay_s)
    starts: list[PodStart] = []
    if pod == cluster.head:
        # The workers keep serving meanwhile; a head that fails to start is replaced until it joins.
        starts += cluster.replace_until_joined(pod)
    else:
        cluster.start_pod(pod, wait=False)
        starts.append(PodStart(pod, cluster.pods[pod].generation, False, 0.0))
    resubmitted = False

    def whole() -> bool:
        nonlocal resubmitted
        for start in cluster.replace_failed_pods():
            # A failed start replaces its own record (pod, generation); a new start is appended.
            known = [i for i, s in enumerate(starts) if (s.pod, s.generation) == (start.pod, start.generation)]
            if known:
                starts[known[0]] = start
            else:
                starts.append(start)
        try:
            status = cluster.dashboard(timeout_s=5).status()
        except (requests.RequestException, ValueError):
            return False
        if not status.get("applications") and not resubmitted:
            cluster.dashboard().deploy(cluster.serve_config)
            resubmitted = True
            return False
        if not cluster.healthy():
            return False
        return all(len(pods) >= min_pods_per_deployment for pods in spread(cluster).values())

    if not wait_until(whole, timeout_s):
        tried = "; ".join(f"{s.pod} start {s.generation}: {s.reason or 'joined'}" for s in starts)
        raise TimeoutError(f"{fault}: Serve not whole {timeout_s} s after killing {pod} (starts: {tried})")
    recovered_at = time.monotonic()
    starts = joined_when_whole(cluster, starts)
    time.sleep(settle_s)
    window = load.between(killed_at, recovered_at + settle_s)
    failures = [o for o in window if not o.ok]
    return FaultReport(
        fault=fault,
        pod=pod,
        entry=entry,
        requests=len(window),
        failures=len(failures),
        success_ratio=(len(window) - len(failures)) / len(window) if window else 0.0,
        recovery_s=round(recovered_at - killed_at, 1),
        resubmitted=resubmitted,
        failure_samples=sorted({o.detail for o in failures})[:5],
        starts=starts,
    )
