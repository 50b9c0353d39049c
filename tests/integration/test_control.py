"""Control features on the real local Ray: scale from zero, back-pressure under a burst, the
latency-SLA autoscaling policy, and the latency-aware router with one replica slowed.

Each test deploys a variant of the project's config through the dashboard (as a ``helm
upgrade`` would) and restores the project's config afterwards.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import ray
import requests
from ray import serve
from ray.serve._private.common import DeploymentID

from serve_app.config import APP_NAME, SERVE_CONFIG_PATH
from serve_app.local.serve_config import load_serve_config

pytestmark = pytest.mark.slow


def project_config(local_serve) -> dict:
    """The project's own config (its Classifier autoscaling included) on the session's port."""
    config = load_serve_config(SERVE_CONFIG_PATH, http_port=local_serve.serve_config["http_options"]["port"])
    config["tracing_config"] = local_serve.serve_config["tracing_config"]
    return config


def deployment(config: dict, name: str) -> dict:
    return next(d for d in config["applications"][0]["deployments"] if d["name"] == name)


@contextmanager
def deployed(local_serve, config: dict) -> Iterator[None]:
    """Deploy ``config``; restore the project's config afterwards."""
    local_serve.dashboard.deploy(config)
    local_serve.dashboard.wait_until_running([APP_NAME], timeout_s=300)
    try:
        yield
    finally:
        local_serve.dashboard.deploy(local_serve.serve_config)
        local_serve.dashboard.wait_until_running([APP_NAME], timeout_s=300)


def running(local_serve, name: str) -> int:
    return local_serve.dashboard.running_replicas(APP_NAME).get(name, 0)


def wait_for_replicas(local_serve, name: str, predicate, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    count = running(local_serve, name)
    while not predicate(count) and time.monotonic() < deadline:
        time.sleep(1)
        count = running(local_serve, name)
    return count


def test_first_request_waits_for_a_replica_when_scaled_to_zero(local_serve, example_digits):
    images, labels = example_digits
    config = project_config(local_serve)
    classifier = deployment(config, "Classifier")
    classifier["autoscaling_config"].update(min_replicas=0, initial_replicas=0, downscale_delay_s=2)
    with deployed(local_serve, config):
        assert wait_for_replicas(local_serve, "Classifier", lambda n: n == 0, timeout_s=120) == 0
        started = time.monotonic()
        response = local_serve.post("/predict", json={"image": images.tolist()})
        waited = time.monotonic() - started
        assert response.status_code == 200
        assert response.json()["predicted_label"] == labels.tolist()
        assert running(local_serve, "Classifier") >= 1
        print(f"first request at zero replicas answered after {waited:.1f} s")


def test_burst_past_capacity_is_answered_503_fast_and_the_service_recovers(local_serve, example_digits):
    images, labels = example_digits
    config = copy.deepcopy(local_serve.serve_config)
    ingress = deployment(config, "Ingress")
    ingress.update(max_ongoing_requests=4, max_queued_requests=4)
    ingress["user_config"] = {"max_batch_size": 4, "batch_wait_timeout_s": 0.0}
    body = {"image": images[:1].tolist()}
    with deployed(local_serve, config):
        local_serve.post("/predict", json=body).raise_for_status()  # a Classifier replica is up

        def send(_: int) -> tuple[int, float, str | None]:
            started = time.monotonic()
            response = requests.post(local_serve.base_url + "/predict", json=body, timeout=60)
            return response.status_code, time.monotonic() - started, response.headers.get("retry-after")

        with ThreadPoolExecutor(max_workers=64) as pool:
            results = list(pool.map(send, range(256)))
        rejected = [r for r in results if r[0] == 503]
        assert all(status in (200, 503) for status, _, _ in results)
        assert len(rejected) > 0, "the burst never exceeded capacity"
        assert all(retry == "1" for _, _, retry in rejected)
        rejected_s = sorted(seconds for _, seconds, _ in rejected)
        median_s = rejected_s[len(rejected_s) // 2]
        print(f"{len(rejected)} of {len(results)} answered 503; median {median_s * 1000:.0f} ms")
        assert median_s < 1.0  # answered at once, not after a timeout
        # Recovery: after the burst, requests succeed again.
        time.sleep(1)
        for _ in range(5):
            assert local_serve.post("/predict", json=body).json()["predicted_label"] == [int(labels[0])]


def test_latency_sla_policy_scales_up_under_load_and_back_down(local_serve, example_digits):
    images, _ = example_digits
    config = project_config(local_serve)
    classifier = deployment(config, "Classifier")
    classifier["autoscaling_config"] = {
        "min_replicas": 1,
        "initial_replicas": 1,
        "max_replicas": 2,
        "upscale_delay_s": 1,
        "downscale_delay_s": 3,
        "look_back_period_s": 12,
        "policy": {
            "policy_function": "serve_app.policies:LatencySLAPolicy",
            "policy_kwargs": {"sla_ms": 20, "downscale_below": 0.9},
        },
    }
    # Every model call of every replica takes 40 ms longer than the 20 ms SLA allows.
    classifier["user_config"] = {"max_batch_size": 16, "batch_wait_timeout_s": 0.0, "debug_delay_ms": 40}
    body = {"image": images[:1].tolist()}
    with deployed(local_serve, config):
        assert wait_for_replicas(local_serve, "Classifier", lambda n: n == 1, timeout_s=60) == 1
        deadline = time.monotonic() + 90
        with ThreadPoolExecutor(max_workers=4) as pool:
            while running(local_serve, "Classifier") < 2 and time.monotonic() < deadline:
                list(pool.map(lambda _: local_serve.post("/predict", json=body), range(16)))
        assert running(local_serve, "Classifier") == 2
        # Load gone and the delay removed: idle replicas report low latency, the policy scales down.
        classifier["user_config"] = {"max_batch_size": 16, "batch_wait_timeout_s": 0.0}
        local_serve.dashboard.deploy(config)
        assert wait_for_replicas(local_serve, "Classifier", lambda n: n == 1, timeout_s=120) == 1


def classifier_ranks(app_name: str) -> dict[str, int]:
    """Replica id -> rank of the app's Classifier replicas, as Serve's controller assigned them.

    The rank is what Serve passes to ``Classifier.reconfigure()``, where ``debug_slow_rank``
    picks the replica that ``debug_delay_ms`` slows; the replica id is the ``replica`` tag of the
    replica's metrics. (The controller's own accessor: no public API tells a replica's rank.)
    """
    controller = serve.context._get_global_client()._controller
    ranks = ray.get(controller._get_replica_ranks_mapping.remote(DeploymentID(name="Classifier", app_name=app_name)))
    return {replica_id: rank.rank for replica_id, rank in ranks.items()}


def calls_per_replica(local_serve, app_name: str, replica_ids: Iterable[str]) -> dict[str, float]:
    """Requests each Classifier replica has processed (Serve's per-replica request counter), once exported."""
    return {
        replica_id: local_serve.settled(
            "ray_serve_deployment_request_counter_total",
            application=app_name,
            deployment="Classifier",
            replica=replica_id,
        )
        for replica_id in replica_ids
    }


def test_latency_aware_router_avoids_the_slowed_replica(local_serve, example_digits):
    """The share of the Classifier's calls that the slowed replica serves, counted per replica.

    No wall-clock threshold: the replica that served each call is counted from Serve's
    per-replica request counter, and the slowed replica is known by its rank. (How much faster
    the latency-aware router answers is measured by ``python -m bench.router``.)
    """
    images, _ = example_digits
    slow_rank = 0

    def slow_share(router_class: str | None) -> float:
        config = copy.deepcopy(local_serve.serve_config)
        classifier = deployment(config, "Classifier")
        classifier.pop("autoscaling_config", None)
        classifier["num_replicas"] = 2
        classifier["ray_actor_options"]["num_cpus"] = 0.5  # fits beside the project's app
        app = config["applications"][0]
        app["args"]["tasks"]["enabled"] = False
        app["deployments"] = [d for d in app["deployments"] if d["name"] != "TaskConsumer"]
        classifier["user_config"] = {
            "max_batch_size": 16,
            "batch_wait_timeout_s": 0.0,
            "debug_delay_ms": 150,
            "debug_slow_rank": slow_rank,
        }
        classifier["request_router_config"] = {"request_routing_stats_period_s": 1}
        if router_class:
            classifier["request_router_config"]["request_router_class"] = router_class
        # A distinct app name: handles keep the router they were built with.
        app_name = f"{APP_NAME}-router-{'custom' if router_class else 'default'}"
        app["name"] = app_name
        app["route_prefix"] = "/router-test"
        both = local_serve.serve_config["applications"] + config["applications"]
        local_serve.dashboard.deploy({**config, "applications": both})
        local_serve.dashboard.wait_until_running([app_name], timeout_s=300)
        try:
            ranks = classifier_ranks(app_name)
            assert sorted(ranks.values()) == [0, 1], ranks
            (slowed,) = [replica_id for replica_id, rank in ranks.items() if rank == slow_rank]
            url = local_serve.base_url + "/router-test/predict"
            body = {"image": images[:1].tolist()}

            def send(_: int) -> None:
                requests.post(url, json=body, timeout=60).raise_for_status()

            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(send, range(40)))  # warm up: the replicas' routing stats flow
                time.sleep(3)
                before = calls_per_replica(local_serve, app_name, ranks)
                list(pool.map(send, range(120)))
            after = calls_per_replica(local_serve, app_name, ranks)
            assert classifier_ranks(app_name) == ranks, "a Classifier replica was replaced during the run"
        finally:
            local_serve.dashboard.deploy(local_serve.serve_config)
            local_serve.dashboard.wait_until_running([APP_NAME], timeout_s=300)
        served = {replica_id: after[replica_id] - before[replica_id] for replica_id in ranks}
        print(f"{router_class or 'default router'}: Classifier calls per replica {served} (slowed: {slowed})")
        # The Ingress merges concurrent requests into one Classifier call: at least one call, at most one a request.
        assert 1 <= sum(served.values()) <= 120
        return served[slowed] / sum(served.values())

    default_share = slow_share(None)
    custom_share = slow_share("serve_app.router:LatencyAwareRouter")
    print(f"Classifier calls on the slowed replica: default {default_share:.0%}, latency-aware {custom_share:.0%}")
    assert custom_share < default_share
    assert custom_share < 0.15


def test_a_client_leaving_does_not_strand_the_requests_merged_with_its_own(local_serve, example_digits):
    """A and B share one merged graph call made in A's context; A's client leaves mid-call.

    Serve cancels the calls made in A's context; B must still be answered (the Ingress makes
    the call again in B's context) instead of waiting until its own timeout.
    """
    images, labels = example_digits
    config = copy.deepcopy(local_serve.serve_config)
    deployment(config, "Ingress")["user_config"] = {"max_batch_size": 16, "batch_wait_timeout_s": 0.3}
    classifier = deployment(config, "Classifier")
    classifier["user_config"] = {**(classifier.get("user_config") or {}), "debug_delay_ms": 1500}
    url = local_serve.base_url + "/predict"

    def leaves_early() -> str:
        try:
            requests.post(url, json={"image": images[:1].tolist()}, timeout=(5, 0.8))
        except requests.exceptions.ReadTimeout:
            return "left"
        return "answered"

    def waits() -> tuple[int, float, dict]:
        time.sleep(0.05)  # after A, inside the Ingress's 0.3 s batch wait: A's context makes the call
        started = time.monotonic()
        response = requests.post(url, json={"image": images[1:2].tolist()}, timeout=30)
        return response.status_code, time.monotonic() - started, response.json()

    with deployed(local_serve, config), ThreadPoolExecutor(max_workers=2) as pool:
        requests.post(url, json={"image": images[:1].tolist()}, timeout=60).raise_for_status()  # settled
        first, second = pool.submit(leaves_early), pool.submit(waits)
        assert first.result() == "left"
        status, elapsed_s, body = second.result()
    assert status == 200, body
    assert body["predicted_label"] == [int(labels[1])]
    assert elapsed_s < 10, f"B waited {elapsed_s:.1f} s: it was stranded with A's cancelled call"
