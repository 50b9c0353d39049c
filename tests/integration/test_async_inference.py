"""Asynchronous inference on a real Redis: round trip, validation at submit, retries and dead
letters, unprocessable tasks, and no task lost when the consumer is killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
import redis
from ray.serve.task_consumer import instantiate_adapter_from_config

from serve_app.config import APP_NAME
from serve_app.tasks import REDIS_URL_ENV, TASK_NAME, TaskSettings, task_processor_config
from serve_app.training.examples import EXAMPLES_DIR

DIGIT = json.loads((EXAMPLES_DIR / "digit.json").read_text())
SETTINGS = TaskSettings()  # the queue names of the project's config


def wait_for_states(local_serve, task_ids: list[str], timeout_s: float) -> dict[str, dict]:
    """Poll GET /tasks/{id} until every task is done (or the time is up); return the last views."""
    views: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    pending = list(task_ids)
    while pending and time.monotonic() < deadline:
        still = []
        for task_id in pending:
            view = local_serve.get(f"/tasks/{task_id}").json()
            views[task_id] = view
            if view["state"] not in ("succeeded", "failed"):
                still.append(task_id)
        pending = still
        if pending:
            time.sleep(0.5)
    return views


@pytest.fixture(scope="module")
def broker(local_serve):
    """A raw Redis client and a producer on the app's queue (to enqueue what the Ingress never would)."""
    client = redis.Redis.from_url(os.environ[REDIS_URL_ENV])
    return client, instantiate_adapter_from_config(task_processor_config(SETTINGS))


def test_task_round_trip(local_serve):
    response = local_serve.post("/tasks", json=DIGIT)
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    assert response.headers["location"] == f"/tasks/{task_id}"
    view = wait_for_states(local_serve, [task_id], timeout_s=60)[task_id]
    assert view["state"] == "succeeded", view
    assert view["result"]["predicted_label"] == [7] and view["result"]["model_id"] == "mnist-cnn"


def test_task_uses_the_requested_model(local_serve, example_digits):
    images, labels = example_digits
    response = local_serve.post(
        "/tasks", json={"image": (255 - images).tolist()}, headers={"serve_multiplexed_model_id": "mnist-cnn-inverted"}
    )
    view = wait_for_states(local_serve, [response.json()["task_id"]], timeout_s=60)[response.json()["task_id"]]
    assert view["result"]["model_id"] == "mnist-cnn-inverted"
    assert view["result"]["predicted_label"] == labels.tolist()


@pytest.mark.parametrize(
    ("body", "status"),
    [({"image": [[[0] * 27] * 28]}, 422), ({"image": []}, 422), ({"image": [[[0] * 28] * 28] * 300}, 413)],
)
def test_bad_bodies_are_refused_at_submit_time(local_serve, broker, body, status):
    client, _ = broker
    queued = client.llen(SETTINGS.queue_name)
    assert local_serve.post("/tasks", json=body).status_code == status
    assert local_serve.post("/tasks", data=b"{oops").status_code == 400
    assert client.llen(SETTINGS.queue_name) == queued  # nothing was enqueued


def test_unknown_task_ids_are_404(local_serve):
    assert local_serve.get("/tasks/6f1c1b9e-0000-4000-8000-000000000000").status_code == 404
    assert local_serve.get("/tasks/not-an-id").status_code == 404


def test_failing_task_is_retried_then_dead_lettered(local_serve, broker):
    client, producer = broker
    dead_before = client.llen(SETTINGS.failed_queue_name)
    # A model the store does not have: the Classifier fails every attempt.
    result = producer.enqueue_task_sync(
        TASK_NAME, kwargs={"image": DIGIT["image"], "pixel_scale": "uint8", "model_id": "no-such-model"}
    )
    client.set("mnist-serve:task:" + result.id, 1, ex=600)  # as the Ingress records its ids
    view = wait_for_states(local_serve, [result.id], timeout_s=120)[result.id]
    assert view["state"] == "failed", view
    assert "no-such-model" in view["error"]
    deadline = time.monotonic() + 30
    while client.llen(SETTINGS.failed_queue_name) == dead_before and time.monotonic() < deadline:
        time.sleep(0.5)
    letters = [json.loads(m) for m in client.lrange(SETTINGS.failed_queue_name, 0, -1)]
    assert any(result.id in json.dumps(letter) for letter in letters)


def test_malformed_task_goes_to_the_unprocessable_queue(local_serve, broker):
    client, producer = broker
    before = client.llen(SETTINGS.unprocessable_queue_name)
    result = producer.enqueue_task_sync(
        TASK_NAME, kwargs={"image": [[1, 2, 3]], "pixel_scale": "uint8", "model_id": "mnist-cnn"}
    )
    client.set("mnist-serve:task:" + result.id, 1, ex=600)
    view = wait_for_states(local_serve, [result.id], timeout_s=60)[result.id]
    assert view["state"] == "failed" and "shape" in view["error"]
    assert client.llen(SETTINGS.unprocessable_queue_name) == before + 1


@pytest.mark.slow
def test_no_task_is_lost_when_the_consumer_is_killed(local_serve, mnist_test):
    images, labels = mnist_test.images[:240], mnist_test.labels[:240]
    task_ids = [
        local_serve.post("/tasks", json={"image": images[i : i + 1].tolist()}).json()["task_id"] for i in range(240)
    ]
    # Kill the consumer's process (SIGKILL: no clean shutdown, no acknowledgements) mid-run.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = sum(local_serve.get(f"/tasks/{t}").json()["state"] == "succeeded" for t in task_ids[:40])
        if done >= 10:
            break
        time.sleep(0.2)
    pids = local_serve.replica_pids()["TaskConsumer"]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    views = wait_for_states(local_serve, task_ids, timeout_s=240)
    states = [views[t]["state"] for t in task_ids]
    assert states.count("succeeded") == 240, {s: states.count(s) for s in set(states)}
    predicted = np.asarray([views[t]["result"]["predicted_label"][0] for t in task_ids])
    assert float(np.mean(predicted == labels)) >= 0.98
    # The consumer comes back: Serve replaces the killed replica.
    deadline = time.monotonic() + 120
    status = ""
    while time.monotonic() < deadline:
        status = local_serve.dashboard.status()["applications"][APP_NAME]["deployments"]["TaskConsumer"]["status"]
        if status == "HEALTHY":
            break
        time.sleep(1)
    assert status == "HEALTHY"
