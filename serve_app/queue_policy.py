"""Autoscaling of the TaskConsumer on the length of its Redis queue.

Serve's ``AsyncInferenceAutoscalingPolicy`` polls the broker for the queue length and scales
on queued plus ongoing tasks against ``target_ongoing_requests``. It takes the broker URL as
a keyword argument, which would put Redis's password into the Serve config (stored in plain
text in a RayService); this subclass reads it from ``$MNIST_SERVE_REDIS_URL`` in the Serve
controller's process instead. Serve's config names it by import string::

    autoscaling_config:
      policy:
        policy_function: serve_app.queue_policy:QueueLengthPolicy
        policy_kwargs: {queue_name: mnist-tasks, poll_interval_s: 2}
"""

from __future__ import annotations

from ray.serve.async_inference_autoscaling_policy import AsyncInferenceAutoscalingPolicy

from serve_app.tasks import redis_url


class QueueLengthPolicy(AsyncInferenceAutoscalingPolicy):
    """``AsyncInferenceAutoscalingPolicy`` on the app's Redis (URL from the environment)."""

    def __init__(self, queue_name: str, poll_interval_s: float = 2.0) -> None:
        super().__init__(broker_url=redis_url(), queue_name=queue_name, poll_interval_s=poll_interval_s)
