"""The KubeRay operator's path, for real: the chart's rendered serveConfigV2 on a local Ray.

The operator converts serveConfigV2 to JSON and PUTs it to the dashboard's
/api/serve/applications/ with `x-ray-authorization: Bearer <token>`, then polls
GET ...?api_type=declarative until every application is RUNNING. This test does the same
with the cpu-only scenario, classifies real digits, then changes only user_config (the
batch size and the images per model call) in values and PUTs again while requests keep flowing.
"""

from __future__ import annotations

import copy
import threading
import time

import pytest
from ray import serve

from serve_app.config import APP_NAME
from tests.chart.conftest import render_chart, scenario_values, serve_config_of

pytestmark = pytest.mark.chart


def rendered_serve_config(values: dict) -> dict:
    """serveConfigV2 of the chart rendered with ``values``, parsed as the operator parses it."""
    return serve_config_of(render_chart(values))


def classifier_batching() -> set[tuple[int, int]]:
    """(max_batch_size, max_images_per_model_call) in force on the Classifier replicas (several calls)."""
    handle = serve.get_deployment_handle("Classifier", APP_NAME)
    answers = (handle.batching_config.remote().result() for _ in range(8))
    return {(answer["max_batch_size"], answer["max_images_per_model_call"]) for answer in answers}


class Traffic:
    """Sends real digits in a background thread and counts every outcome."""

    def __init__(self, local_serve, images, labels) -> None:
        self.local_serve, self.images, self.labels = local_serve, images, labels
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            response = self.local_serve.post("/predict", json={"image": [self.images[index % 10].tolist()]})
            if response.status_code == 200 and response.json()["predicted_label"] == [int(self.labels[index % 10])]:
                self.ok += 1
            else:
                self.failures.append(f"{response.status_code}: {response.text[:200]}")
            index += 1

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=120)


def test_rendered_serve_config_deploys_serves_and_reconfigures_live(local_serve, example_digits):
    images, labels = example_digits
    values = copy.deepcopy(scenario_values("cpu-only"))
    chart_config = rendered_serve_config(values)
    try:
        local_serve.dashboard.deploy(chart_config)
        local_serve.dashboard.wait_until_running([APP_NAME], timeout_s=300)
        deployed = local_serve.dashboard.status()["applications"][APP_NAME]["deployments"]
        assert deployed["Classifier"]["target_num_replicas"] == 2
        response = local_serve.post("/predict", json={"image": images.tolist()})
        assert response.json()["predicted_label"] == labels.tolist()
        assert classifier_batching() == {(16, 128)}
        pids_before = local_serve.replica_pids()

        values.setdefault("serve", {}).setdefault("classifier", {})["batching"] = {
            "maxBatchSize": 4,
            "batchWaitTimeoutS": 0.002,
            "maxImagesPerModelCall": 32,
        }
        reconfigured = rendered_serve_config(values)
        changed = [d for d in reconfigured["applications"][0]["deployments"] if d["name"] == "Classifier"]
        assert changed[0]["user_config"] == {
            "max_batch_size": 4,
            "batch_wait_timeout_s": 0.002,
            "max_images_per_model_call": 32,
        }

        with Traffic(local_serve, images, labels) as traffic:
            time.sleep(2)
            local_serve.dashboard.deploy(reconfigured)
            local_serve.dashboard.wait_until_running([APP_NAME], timeout_s=300)
            deadline = time.monotonic() + 60
            while classifier_batching() != {(4, 32)} and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(2)
        assert classifier_batching() == {(4, 32)}
        assert traffic.failures == []
        assert traffic.ok > 20
        # user_config changes are applied in place: no replica was restarted.
        assert local_serve.replica_pids() == pids_before
    finally:
        local_serve.dashboard.deploy(local_serve.serve_config)
        local_serve.dashboard.wait_until_running([APP_NAME], timeout_s=300)
