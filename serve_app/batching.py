"""Pure helpers of the Classifier's dynamic batching (no Ray imports).

``@serve.batch`` hands the Ingress (and the Classifier) a list of requests; each may carry
several images and name its own model. The batch is cut per model (a model never sees
another model's images), each model's images are concatenated into one call, and the
answers are split back per request.

A merged call runs in one request's context (its id, its trace); when that request is
cancelled, the call is cancelled with it and :func:`call_in_first_live_context` makes it again in the
context of the next request of the group.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from serve_app.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from serve_app.config import BatchingConfig

T = TypeVar("T")


@dataclass
class ModelRequest:
    """One caller's images (N, 1, 28, 28) for one model, and the caller's context.

    ``context`` is the caller's ``contextvars.Context`` (Serve's request context, the trace):
    a merged call runs in its own task, so it runs in the context of its batch's first request.
    """

    model_id: str
    images: np.ndarray
    context: Any = None


def group_by_model(requests: list[ModelRequest]) -> dict[tuple[str, str], list[int]]:
    """(model id, pixel dtype) -> indices of the requests in that group, in arrival order.

    The dtype is part of the key because uint8 pixels (0-255) and float pixels ([0, 1]) are
    scaled differently and must not be concatenated into one array.
    """
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, request in enumerate(requests):
        groups[(request.model_id, request.images.dtype.str)].append(index)
    return dict(groups)


def merge(requests: list[ModelRequest], indices: list[int]) -> tuple[np.ndarray, list[int]]:
    """The images of the chosen requests in one array, and each request's number of rows."""
    sizes = [len(requests[i].images) for i in indices]
    return np.concatenate([requests[i].images for i in indices]), sizes


def split_answer(answer: dict, sizes: list[int]) -> list[dict]:
    """Split a merged answer (``predicted_label``/``probabilities`` lists) back per request."""
    bounds = np.cumsum([0, *sizes])
    return [
        {
            "predicted_label": answer["predicted_label"][start:end],
            "probabilities": answer["probabilities"][start:end],
            "model_id": answer["model_id"],
        }
        for start, end in itertools.pairwise(bounds)
    ]


async def call_in_first_live_context(
    contexts: Sequence[contextvars.Context | None],
    call: Callable[[], Coroutine[Any, Any, T]],
    cancellations: tuple[type[BaseException], ...] = (asyncio.CancelledError,),
    on_cancelled: Callable[[int], None] | None = None,
) -> T:
    """``call()``'s result, made in the first of ``contexts`` whose request is not cancelled.

    The call runs as a task in ``contexts[0]`` (``None``: in the current context, directly). A
    cancellation of that call (any of ``cancellations``: the caller's cancellation reaches the
    calls made in its context) while the current task itself is not being cancelled means its
    request was cancelled: ``on_cancelled(attempt)`` is told (attempt counts from 0) and
    ``call()`` is made again in the next context. A cancellation of the current task (shutdown)
    propagates at once, and so does any other exception. When every context's call was
    cancelled: :class:`~serve_app.errors.ServiceUnavailableError`.
    """
    for attempt, context in enumerate(contexts):
        coroutine = call()
        try:
            if context is None:
                return await coroutine
            return await asyncio.create_task(coroutine, context=context)
        except cancellations:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            if on_cancelled is not None:
                on_cancelled(attempt)
    raise ServiceUnavailableError("every request of this merged call was cancelled")


def apply_batching(batched: Any, config: BatchingConfig) -> None:
    """Set a ``@serve.batch`` method's batch size and wait from ``config``, live.

    ``batched`` is ``Any`` on purpose: Ray annotates what ``serve.batch`` returns as the plain
    method, without the ``set_max_batch_size`` and ``set_batch_wait_timeout_s`` its wrapper has.
    """
    batched.set_max_batch_size(config.max_batch_size)
    batched.set_batch_wait_timeout_s(config.batch_wait_timeout_s)
