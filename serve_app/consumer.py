"""TaskConsumer deployment: asynchronous inference tasks from Redis, through the graph.

Built with Serve's ``@task_consumer`` and ``@task_handler`` (the Celery adapter). A task
carries validated pixels (the Ingress rejected bad bodies with 422 before enqueueing); the
handler sends them through the Preprocessor and the Classifier and returns the Classifier's
answer, which Celery stores in Redis for ``GET /tasks/{id}``.

* Failures (e.g. a model replica unavailable) are retried ``max_retries`` times with
  exponential back-off, then the task goes to the dead-letter list ``failed_queue_name``.
* A task whose payload is not a valid image batch (another producer's mistake) is not
  retried: it is copied to ``unprocessable_queue_name`` and finishes as failed with the reason.
* Task handlers must be synchronous (Celery); they run on the adapter's worker threads,
  ``max_ongoing_requests`` of them per replica.
"""

from __future__ import annotations

import logging
from typing import Any

from ray import serve
from ray.serve.deployment import Deployment
from ray.serve.handle import DeploymentHandle
from ray.serve.task_consumer import instantiate_adapter_from_config, task_consumer, task_handler

from serve_app.errors import ServeAppError
from serve_app.inputs import PixelScale, decode_images
from serve_app.tasks import TASK_NAME, TaskSettings, task_processor_config

logger = logging.getLogger("ray.serve")


class TaskConsumer:
    """Classifies queued tasks by calling the Preprocessor and the Classifier."""

    def __init__(self, preprocessor: DeploymentHandle, classifier: DeploymentHandle, settings: TaskSettings) -> None:
        self.preprocessor = preprocessor
        self.classifier = classifier
        self.settings = settings
        # Producer for the unprocessable list (public API; the consumer only reads the main queue).
        self._unprocessable = instantiate_adapter_from_config(
            task_processor_config(settings, queue_name=settings.unprocessable_queue_name)
        )

    @task_handler(name=TASK_NAME)
    def classify(self, image: list, pixel_scale: PixelScale, model_id: str) -> dict[str, Any]:
        """One task: ``image`` (N, 1, 28, 28) lists in ``pixel_scale`` for ``model_id``.

        The task's arguments come from the queue as sent: ``decode_images`` checks ``pixel_scale``
        too (an unknown one makes the task unprocessable).
        """
        try:
            pixels = decode_images(image, pixel_scale, max_images=4096)
        except ServeAppError as error:
            self._unprocessable.enqueue_task_sync(
                TASK_NAME, kwargs={"reason": error.message, "model_id": model_id, "pixel_scale": pixel_scale}
            )
            logger.warning(
                "unprocessable task (%s); copied to %s", error.message, self.settings.unprocessable_queue_name
            )
            return {"unprocessable": True, "detail": error.message}
        normalised = self.preprocessor.run.remote(pixels)
        # .result() blocks this Celery worker thread, never the replica's event loop.
        return self.classifier.options(multiplexed_model_id=model_id).predict.remote(normalised, model_id).result()


def task_consumer_deployment(settings: TaskSettings) -> Deployment:
    """The TaskConsumer deployment for ``settings`` (Redis from $MNIST_SERVE_REDIS_URL).

    Decorated here rather than at import so that queue names and retries come from the app's
    args; Serve's config file still sets its replicas, concurrency and autoscaling by name.
    """
    consumer_class = task_consumer(task_processor_config=task_processor_config(settings))(TaskConsumer)
    return serve.deployment(name="TaskConsumer", max_ongoing_requests=8, ray_actor_options={"num_cpus": 0.25})(
        consumer_class
    )
