"""Multiplexing: requests spread over the store's models by a Zipf law, via the model header.

At the start, ``GET /models`` lists the models; they are ranked as listed (the default model
first) and each request picks one with probability proportional to ``1 / rank**--zipf-s``, sent
in the ``serve_multiplexed_model_id`` header. Digits go to the inverted model black on white,
as it was trained. Each answer must come from the model asked for. A share ``--unknown-share``
of requests names a model that does not exist and must get a 404 listing the known ones.

Verdict: ``--max-fail-ratio`` (0.001), ``--max-p95-ms`` (1000), ``--max-p99-ms`` (2000), and
``--max-wrong-model`` (0): answers from another model than the one asked for.

Usage::

    locust -f loadtests/multiplex.py --host http://localhost:8000 --headless -u 8 -r 8 -t 60s --csv results/multiplex
"""

from __future__ import annotations

from collections import Counter

import requests
from _common import DigitsUser, Option, ScenarioRun, Threshold, post_digits
from _verdict import Check, zipf_weights
from locust import events, task

UNKNOWN_MODEL = "no-such-model"


def model_mix(run: ScenarioRun) -> dict:
    """Requests per model (from the stats' names) and the Zipf weights used."""
    per_model = Counter()
    for (name, _method), entry in run.environment.stats.entries.items():
        model_id = name.split("[", 1)[1].split("]", 1)[0] if "[" in name else None
        if model_id and model_id != UNKNOWN_MODEL:
            per_model[model_id] += entry.num_requests
    return {"models": MODELS, "weights": WEIGHTS, "requests_per_model": dict(per_model)}


def multiplex_checks(run: ScenarioRun) -> list[Check]:
    """Answers from another model than the one asked for."""
    wrong = sum(
        error.occurrences for error in run.environment.stats.errors.values() if "answered by model" in str(error.error)
    )
    return [Check("answers from the wrong model", wrong, run.option("max-wrong-model"))]


RUN = ScenarioRun(
    "multiplex",
    thresholds=[
        Threshold("max-fail-ratio", 0.001, "largest share of failed requests"),
        Threshold("max-p95-ms", 1000, "largest p95 latency, ms"),
        Threshold("max-p99-ms", 2000, "largest p99 latency, ms"),
        Threshold("max-wrong-model", 0, "most answers from another model than the one asked for"),
    ],
    options=[
        Option("zipf-s", 1.1, "Zipf exponent: 0 spreads evenly, larger favours the first models", type=float),
        Option("unknown-share", 0.01, "share of requests naming a model that does not exist", type=float),
    ],
    extra_checks=multiplex_checks,
    extra_report=model_mix,
)
MODELS: list[str] = []
WEIGHTS: list[float] = []
INVERTED: set[str] = set()


@events.test_start.add_listener
def list_models(environment, **_) -> None:
    """The store's models, from the service itself."""
    response = requests.get(environment.host.rstrip("/") + "/models", timeout=30)
    response.raise_for_status()
    listed = response.json()["models"]
    listed.sort(key=lambda model: not model["default"])  # the default model is rank 1
    MODELS[:] = [model["model_id"] for model in listed]
    WEIGHTS[:] = zipf_weights(len(MODELS), RUN.option("zipf-s"))
    INVERTED.clear()
    INVERTED.update(model["model_id"] for model in listed if model["pixel_transform"] == "invert")


class MultiplexUser(DigitsUser):
    """POSTs a real digit for a Zipf-chosen model; now and then for an unknown one."""

    @task
    def classify(self) -> None:
        """One request for a Zipf-chosen model, or for an unknown one."""
        if self.rng.random() < RUN.option("unknown-share"):
            self.unknown_model()
            return
        model_id = MODELS[self.rng.choice(len(MODELS), p=WEIGHTS)]
        post_digits(self, RUN, model_id=model_id, invert=model_id in INVERTED)

    def unknown_model(self) -> None:
        """A request naming a model that does not exist: a 404 listing the known ones."""
        images, _ = RUN.digits
        with self.client.post(
            "/predict",
            json={"image": images[:1].tolist()},
            headers={"serve_multiplexed_model_id": UNKNOWN_MODEL},
            name=f"/predict [{UNKNOWN_MODEL}] expects 404",
            timeout=RUN.option("request-timeout"),
            catch_response=True,
        ) as response:
            detail = response.text
            if response.status_code == 404 and all(model in detail for model in MODELS):
                response.success()
            else:
                response.failure(f"expected a 404 listing the known models, got {response.status_code}: {detail[:200]}")
