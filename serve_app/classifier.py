"""Classifier deployment: multiplexed models, dynamic batching, CUDA when given a GPU share.

* **Multiplexing.** Models come from the model store (:mod:`serve_app.store`) on demand,
  at most ``max_models_per_replica`` per replica, least recently used evicted first
  (``@serve.multiplexed``). Serve routes a request to a replica that already holds its
  model (the caller sets ``multiplexed_model_id``). Every replica loads the default model
  while it starts (``preload``): a new replica holds it before its first request, so the
  routers balance the default model's traffic over all replicas from the start instead of
  sticking to the first one that happened to load it, and the first request pays no load.
* **Batching.** Concurrent requests are merged by ``@serve.batch``; its size and wait come
  from ``user_config`` and change live through ``reconfigure()`` (no replica restart).
  A batch may hold requests for several models; each model call is made per model, so a
  model never sees another model's images. A merged batch runs as model calls of at most
  ``max_images_per_model_call`` images (``user_config``): on a CPU one call of thousands of
  images runs at half the images/s of calls of 128 (``python -m bench.model_batch``).
* **Device.** CUDA when the replica was given a GPU share (``num_gpus`` > 0, fractions
  too), the CPU when it was given none. A share without working CUDA fails the replica's start
  with what to check (driver, RuntimeClass), unless the pod declares its GPUs simulated
  (``MNIST_SERVE_SIMULATED_GPUS=1``: the chart's ``workerGroups.gpu.simulateGpus``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import numpy as np
import ray
import torch
from ray import serve
from ray.serve.schema import ReplicaRank

from serve_app.batching import ModelRequest, apply_batching, group_by_model, merge, split_answer
from serve_app.config import DEFAULT_MAX_IMAGES_PER_MODEL_CALL, BatchingConfig, ClassifierUserConfig
from serve_app.latency import RollingLatency
from serve_app.metrics import classifier_metrics
from serve_app.model import gpus_simulated, load_model, predict, select_device
from serve_app.store import ModelCacheTracker, ModelStore

logger = logging.getLogger("ray.serve")

_DEFAULT_BATCHING = BatchingConfig()


# Invariant: max_ongoing_requests >= max_batch_size, or a batch can never fill; 2x lets the
# next batch gather while one runs. The Serve config keeps 32 for a batch size of 16.
@serve.deployment(
    ray_actor_options={"num_cpus": 1, "num_gpus": 0},
    max_ongoing_requests=2 * _DEFAULT_BATCHING.max_batch_size,
    user_config=_DEFAULT_BATCHING.model_dump(),
)
class Classifier:
    """Holds up to ``max_models_per_replica`` TorchScript models in memory."""

    # Serve awaits an async constructor: the replica reports ready only once the preload is done.
    async def __init__(  # type: ignore[misc]  # mypy wants __init__ to return None; Serve awaits this one
        self,
        model_store: str | None = None,
        max_models_per_replica: int = 2,
        preload: tuple[str, ...] = (),
    ) -> None:
        if len(preload) > max_models_per_replica:
            raise ValueError(f"preload {list(preload)} holds more models than max_models_per_replica")
        self.store = ModelStore(model_store)
        self.device = select_device(ray.get_gpu_ids(), torch.cuda.is_available(), gpus_simulated(os.environ))
        self.batching = _DEFAULT_BATCHING
        self.max_images_per_model_call = DEFAULT_MAX_IMAGES_PER_MODEL_CALL
        self.cache = ModelCacheTracker(max_models_per_replica)
        self.metrics = classifier_metrics()
        self.model_latency = RollingLatency(window_s=10.0)  # model calls: the latency-SLA policy
        self.request_latency = RollingLatency(window_s=30.0)  # whole predict() calls: the router
        self.ongoing = 0
        self.debug_delay_s = 0.0

        async def load(model_id: str) -> torch.nn.Module:
            return self._load(model_id)

        # Wired at init so the cache size comes from the app's args (Serve detects it at run time).
        self._multiplexed_model = serve.multiplexed(max_num_models_per_replica=max_models_per_replica)(load)
        logger.info(
            "Classifier on %s, model store %s, %d models per replica",
            self.device,
            self.store.uri,
            max_models_per_replica,
        )
        for model_id in preload:  # a wrong id fails the replica's start, not a request
            await self.get_model(self.store.check_id(model_id))

    def _load(self, model_id: str) -> torch.nn.Module:
        path = self.store.local_artefact(model_id)
        model = load_model(path, self.device)
        self.metrics.model_loads.inc(tags={"model": model_id})
        logger.info("Classifier loaded %s from %s", model_id, path)
        return model

    async def get_model(self, model_id: str) -> torch.nn.Module:
        """The loaded model for ``model_id`` (loading it, and evicting the LRU one, if needed)."""
        event = self.cache.touch(model_id)
        if event.hit:
            self.metrics.cache_hits.inc(tags={"model": model_id})
        if event.evicted is not None:
            self.metrics.evictions.inc(tags={"model": event.evicted})
        return await self._multiplexed_model(model_id)

    def reconfigure(self, user_config: dict[str, Any], rank: ReplicaRank | None = None) -> None:
        """Apply a new ``user_config`` (batch size and wait) without restarting the replica.

        ``rank`` (Serve passes it; 0..N-1 across the deployment's replicas) selects the replica
        that the test-only ``debug_delay_ms`` slows.
        """
        config = ClassifierUserConfig.model_validate(user_config)
        self.batching = config.batching()
        self.max_images_per_model_call = config.max_images_per_model_call
        slowed = config.debug_slow_rank is None or (rank is not None and rank.rank == config.debug_slow_rank)
        self.debug_delay_s = config.debug_delay_ms / 1000 if slowed else 0.0
        apply_batching(self._predict_batch, self.batching)
        logger.info(
            "Classifier batching: %s, at most %d images per model call; test-only delay %.0f ms",
            self.batching,
            self.max_images_per_model_call,
            self.debug_delay_s * 1000,
        )

    async def predict(self, images: np.ndarray, model_id: str | None = None) -> dict[str, Any]:
        """Normalised float32 (N, 1, 28, 28) -> labels, probabilities and the model id.

        The model is ``model_id``, else the request's multiplexed model id.
        """
        chosen = model_id or serve.get_multiplexed_model_id()
        if not chosen:
            raise ValueError("no model id: call with model_id or handle.options(multiplexed_model_id=...)")
        started = time.perf_counter()
        self.ongoing += 1
        try:
            return await self._predict_batch(ModelRequest(chosen, images))
        finally:
            self.ongoing -= 1
            self.request_latency.observe((time.perf_counter() - started) * 1000)

    @serve.batch(
        max_batch_size=_DEFAULT_BATCHING.max_batch_size, batch_wait_timeout_s=_DEFAULT_BATCHING.batch_wait_timeout_s
    )
    async def _predict_batch(self, requests: list[ModelRequest]) -> list[dict[str, Any]]:
        """One model call per model among the merged requests; answers in request order."""
        answers: list[dict[str, Any]] = [{} for _ in requests]
        for (model_id, _), indices in group_by_model(requests).items():
            model = await self.get_model(model_id)
            images, sizes = merge(requests, indices)
            started = time.perf_counter()
            if self.debug_delay_s:
                await asyncio.sleep(self.debug_delay_s)  # test-only slowdown of this replica's model calls
            result = predict(model, torch.from_numpy(images), self.max_images_per_model_call)
            self._record(model_id, len(indices), (time.perf_counter() - started) * 1000, result.labels)
            merged = {
                "predicted_label": result.labels.tolist(),
                "probabilities": result.probabilities.tolist(),
                "model_id": model_id,
            }
            for index, answer in zip(indices, split_answer(merged, sizes), strict=True):
                answers[index] = answer
        return answers

    def _record(self, model_id: str, requests: int, latency_ms: float, labels: np.ndarray) -> None:
        self.model_latency.observe(latency_ms)
        self.metrics.batch_size.observe(requests, tags={"model": model_id})
        self.metrics.model_latency_ms.observe(latency_ms, tags={"model": model_id})
        for digit, count in zip(*np.unique(labels, return_counts=True), strict=True):
            self.metrics.predicted_digits.inc(int(count), tags={"model": model_id, "digit": str(digit)})

    def record_routing_stats(self) -> dict[str, Any]:
        """For the LatencyAwareRouter: p90 of this replica's whole predict() calls, and its load."""
        return self.request_latency.routing_stats(self.ongoing, time.time())

    def record_autoscaling_stats(self) -> dict[str, float]:
        """For the LatencySLAPolicy: the p90 of recent model calls (``LATENCY_METRIC``), in ms."""
        return self.model_latency.autoscaling_stats()

    def batching_config(self) -> dict[str, Any]:
        """The batching settings in force on this replica (and the images per model call)."""
        return {**self.batching.model_dump(), "max_images_per_model_call": self.max_images_per_model_call}

    def loaded_models(self) -> list[str]:
        """Model ids this replica holds, least recently used first."""
        return self.cache.loaded

    def device_name(self) -> str:
        """``cpu`` or ``cuda``: where this replica runs its models."""
        return self.device.type
