"""The producer side of asynchronous inference, used by the Ingress (Serve's public adapter API).

Enqueues with ``enqueue_task_sync`` and reads states with ``get_task_status_sync`` on worker
threads (both block on Redis), and remembers every id it handed out for ``result_ttl_s`` so
that an id it never issued is a 404, not an eternal "pending" (Celery cannot tell them apart).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import numpy as np
import redis
from ray.serve.task_consumer import instantiate_adapter_from_config

from serve_app.errors import ServiceUnavailableError, UnknownTaskError
from serve_app.tasks import SUBMITTED_KEY_PREFIX, TASK_NAME, TaskSettings, redis_url, task_processor_config, task_view

TASK_ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class TaskClient:
    """Submit tasks and read their state."""

    def __init__(self, settings: TaskSettings) -> None:
        self.settings = settings
        self.adapter = instantiate_adapter_from_config(task_processor_config(settings))
        self.redis = redis.Redis.from_url(redis_url())

    async def submit(self, pixels: np.ndarray, model_id: str) -> str:
        """Queue validated pixels for ``model_id``; return the task id."""
        kwargs = {
            "image": pixels.tolist(),
            "pixel_scale": "uint8" if pixels.dtype == np.uint8 else "unit",
            "model_id": model_id,
        }
        try:
            result = await asyncio.to_thread(self.adapter.enqueue_task_sync, TASK_NAME, kwargs=kwargs)
            await asyncio.to_thread(self.redis.set, SUBMITTED_KEY_PREFIX + result.id, 1, ex=self.settings.result_ttl_s)
        except (redis.RedisError, OSError) as error:
            raise ServiceUnavailableError(f"the task queue is unavailable ({type(error).__name__}); retry") from None
        return result.id

    async def status(self, task_id: str) -> dict[str, Any]:
        """The client's view of one task; 404 for an id this service never issued (or that expired)."""
        if not TASK_ID_PATTERN.match(task_id):
            raise UnknownTaskError(f"{task_id!r} is not a task id")
        try:
            known = await asyncio.to_thread(self.redis.exists, SUBMITTED_KEY_PREFIX + task_id)
            if not known:
                raise UnknownTaskError(
                    f"no task {task_id}: never submitted here, or expired after {self.settings.result_ttl_s} s"
                )
            result = await asyncio.to_thread(self.adapter.get_task_status_sync, task_id)
        except (redis.RedisError, OSError) as error:
            raise ServiceUnavailableError(f"the task store is unavailable ({type(error).__name__}); retry") from None
        return task_view(task_id, result.status, result.result)
