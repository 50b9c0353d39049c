"""Asynchronous inference settings and task states (pure apart from Serve's config schemas).

Clients ``POST /tasks`` (the same bodies as ``/predict``) and get a task id at once; the
TaskConsumer deployment takes the task from Redis through Serve's Celery adapter, runs it
through the Preprocessor and the Classifier, and stores the result in Redis, where
``GET /tasks/{id}`` finds it until it expires.

Where Redis is: the environment variable ``MNIST_SERVE_REDIS_URL`` (``redis://[:password@]host:port/db``)
in every Ray process. The local run starts a Redis and sets it; the Helm chart sets it from
its Redis Secret. It is not in the Serve config, which KubeRay stores in plain text.

Delivery is at least once: Celery acknowledges a task only after it finished
(``task_acks_late``) and requeues a task whose worker died; a task left unacknowledged for
``visibility_timeout_s`` is redelivered. Classification is idempotent, so a redelivered task
writes the same result: the client sees each task succeed exactly once.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

REDIS_URL_ENV = "MNIST_SERVE_REDIS_URL"
TASK_NAME = "classify"
#: Key prefix under which the Ingress remembers the ids it handed out (for 404 on unknown ids).
SUBMITTED_KEY_PREFIX = "mnist-serve:task:"

TaskState = Literal["pending", "started", "retrying", "succeeded", "failed"]
_CELERY_STATES: dict[str, TaskState] = {
    "PENDING": "pending",
    "RECEIVED": "pending",
    "STARTED": "started",
    "RETRY": "retrying",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "failed",
}


class TaskSettings(BaseModel):
    """The ``tasks`` block of the app's args."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="serve /tasks; needs Redis at $MNIST_SERVE_REDIS_URL")
    queue_name: str = Field("mnist-tasks", description="Redis list the consumer takes tasks from")
    failed_queue_name: str = Field("mnist-tasks-failed", description="dead letters: tasks failed after retries")
    unprocessable_queue_name: str = Field(
        "mnist-tasks-unprocessable", description="tasks whose name or payload the consumer cannot handle"
    )
    max_retries: int = Field(3, ge=0, le=20, description="retries (exponential back-off) before a dead letter")
    result_ttl_s: int = Field(3600, ge=60, description="seconds a result (and a task id) is kept")
    visibility_timeout_s: int = Field(
        30,
        ge=5,
        description="seconds before an unacknowledged task is redelivered; must exceed the longest task "
        "including its retry back-off, or a slow task runs twice",
    )


def redis_url() -> str:
    """Where Redis is, from the environment; a clear error when unset."""
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        raise RuntimeError(
            f"asynchronous inference needs Redis: set {REDIS_URL_ENV}=redis://host:port/0 "
            "(the local run and the Helm chart set it), or set the app arg tasks.enabled: false"
        )
    return url


def task_processor_config(settings: TaskSettings, queue_name: str | None = None) -> Any:
    """Serve's TaskProcessorConfig for the Celery adapter on Redis (broker and result store)."""
    from ray.serve.schema import CeleryAdapterConfig, TaskProcessorConfig

    url = redis_url()
    return TaskProcessorConfig(
        queue_name=queue_name or settings.queue_name,
        adapter="ray.serve.task_processor.CeleryTaskProcessorAdapter",
        max_retries=settings.max_retries,
        failed_task_queue_name=settings.failed_queue_name,
        unprocessable_task_queue_name=settings.unprocessable_queue_name,
        adapter_config=CeleryAdapterConfig(
            broker_url=url,
            backend_url=url,
            app_custom_config={"result_expires": settings.result_ttl_s, "task_track_started": True},
            broker_transport_options={
                "visibility_timeout": settings.visibility_timeout_s,
                # Requeue unacknowledged tasks of dead consumers promptly (seconds).
                "unacked_restore_interval": 2,
                "unacked_restore_throttle": 1,
            },
        ),
    )


def task_view(task_id: str, celery_status: str, result: Any) -> dict[str, Any]:
    """The client's view of a task: state, and the result or the error once done."""
    state = _CELERY_STATES.get(celery_status, "pending")
    if state == "succeeded" and not (
        isinstance(result, dict) and ("predicted_label" in result or "unprocessable" in result)
    ):
        # Celery reads the result and the status with two calls: the task can finish in between,
        # pairing SUCCESS with the STARTED record ({"pid", "hostname"}). Report it as started;
        # the next poll reads the result.
        state = "started"
    view: dict[str, Any] = {"task_id": task_id, "state": state}
    if state == "succeeded" and isinstance(result, dict) and result.get("unprocessable"):
        view.update(state="failed", error=result["detail"])
    elif state == "succeeded":
        view["result"] = result
    elif state in ("failed", "retrying"):
        view["error"] = f"{type(result).__name__}: {result}" if isinstance(result, BaseException) else str(result)
    return view
