import asyncio
import contextvars

import numpy as np
import pytest

from serve_app.batching import ModelRequest, call_in_first_live_context, group_by_model, merge, split_answer
from serve_app.errors import ServiceUnavailableError


def _request(model_id: str, rows: int, dtype=np.uint8) -> ModelRequest:
    return ModelRequest(model_id, np.zeros((rows, 1, 28, 28), dtype=dtype))


def test_requests_are_grouped_per_model_and_dtype_in_arrival_order():
    requests = [_request("a", 1), _request("b", 1), _request("a", 2), _request("c", 1), _request("a", 1, np.float32)]
    assert group_by_model(requests) == {("a", "|u1"): [0, 2], ("b", "|u1"): [1], ("c", "|u1"): [3], ("a", "<f4"): [4]}


def test_merge_and_split_round_trip():
    requests = [_request("a", 1), _request("a", 3), _request("a", 2)]
    images, sizes = merge(requests, [0, 1, 2])
    assert images.shape == (6, 1, 28, 28) and sizes == [1, 3, 2]
    answer = {"predicted_label": list(range(6)), "probabilities": [[float(i)] for i in range(6)], "model_id": "a"}
    parts = split_answer(answer, sizes)
    assert [p["predicted_label"] for p in parts] == [[0], [1, 2, 3], [4, 5]]
    assert [p["probabilities"] for p in parts] == [[[0.0]], [[1.0], [2.0], [3.0]], [[4.0], [5.0]]]
    assert {p["model_id"] for p in parts} == {"a"}


# --- call_in_first_live_context: a merged call survives the cancellation of the request it runs for ---

CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="batch")


class FakeRequestCancelledError(Exception):
    """Stands for Serve's RequestCancelledError: a cancellation that is not asyncio's."""


def _context_of(caller: str) -> contextvars.Context:
    """A copy of the current context in which CALLER is ``caller`` (a request's context)."""
    context = contextvars.copy_context()
    context.run(CALLER.set, caller)
    return context


class Graph:
    """A fake graph call that records in whose context it ran and answers as each caller's script says.

    ``script[caller]``: ``"answer"``, ``"hang"`` (waits until cancelled), or an exception to raise.
    """

    def __init__(self, script: dict[str, object]) -> None:
        self.script = script
        self.callers: list[str] = []
        self.tasks: dict[str, asyncio.Task] = {}
        self.started: dict[str, asyncio.Event] = {caller: asyncio.Event() for caller in script}

    async def call(self) -> str:
        caller = CALLER.get()
        self.callers.append(caller)
        self.tasks[caller] = asyncio.current_task()
        self.started[caller].set()
        action = self.script[caller]
        if action == "hang":
            await asyncio.get_running_loop().create_future()  # never resolved: only a cancellation ends it
        if isinstance(action, BaseException):
            raise action
        return f"answer in {caller}'s context"


def _cancel_when_started(graph: Graph, caller: str) -> asyncio.Task:
    """Cancel ``caller``'s call once it has started, as Serve does when that caller's client leaves."""

    async def cancel() -> None:
        await graph.started[caller].wait()
        graph.tasks[caller].cancel()

    return asyncio.create_task(cancel())


def test_the_call_runs_once_in_the_first_callers_context():
    async def scenario():
        graph = Graph({"a": "answer", "b": "answer"})
        result = await call_in_first_live_context([_context_of("a"), _context_of("b")], graph.call)
        return result, graph.callers, CALLER.get()

    result, callers, own = asyncio.run(scenario())
    assert result == "answer in a's context"
    assert callers == ["a"]
    assert own == "batch"  # the caller's context never leaks into the batch task


def test_without_a_context_the_call_runs_in_the_current_one():
    async def scenario():
        graph = Graph({"batch": "answer"})
        return await call_in_first_live_context([None], graph.call), graph.callers

    assert asyncio.run(scenario()) == ("answer in batch's context", ["batch"])


def test_a_cancelled_caller_hands_the_call_to_the_next_one():
    async def scenario():
        graph = Graph({"a": "hang", "b": "answer", "c": "answer"})
        retries: list[int] = []
        canceller = _cancel_when_started(graph, "a")
        result = await call_in_first_live_context(
            [_context_of(caller) for caller in "abc"], graph.call, on_cancelled=retries.append
        )
        await canceller
        return result, graph.callers, retries

    assert asyncio.run(scenario()) == ("answer in b's context", ["a", "b"], [0])


def test_a_cancellation_of_another_type_counts_as_the_callers():
    async def scenario():
        graph = Graph({"a": FakeRequestCancelledError(), "b": FakeRequestCancelledError(), "c": "answer"})
        retries: list[int] = []
        result = await call_in_first_live_context(
            [_context_of(caller) for caller in "abc"],
            graph.call,
            cancellations=(asyncio.CancelledError, FakeRequestCancelledError),
            on_cancelled=retries.append,
        )
        return result, graph.callers, retries

    assert asyncio.run(scenario()) == ("answer in c's context", ["a", "b", "c"], [0, 1])


def test_when_every_caller_is_cancelled_the_answer_is_503():
    async def scenario():
        graph = Graph({"a": "hang", "b": "hang"})
        cancellers = [_cancel_when_started(graph, caller) for caller in "ab"]
        with pytest.raises(ServiceUnavailableError, match="every request of this merged call was cancelled"):
            await call_in_first_live_context([_context_of("a"), _context_of("b")], graph.call)
        await asyncio.gather(*cancellers)
        return graph.callers

    assert asyncio.run(scenario()) == ["a", "b"]


def test_a_cancellation_of_the_batch_itself_propagates_without_a_retry():
    async def scenario():
        graph = Graph({"a": "hang", "b": "answer"})
        retries: list[int] = []
        batch = asyncio.create_task(
            call_in_first_live_context([_context_of("a"), _context_of("b")], graph.call, on_cancelled=retries.append)
        )
        await graph.started["a"].wait()
        batch.cancel()  # shutdown: the batch task, not a caller, is cancelled
        with pytest.raises(asyncio.CancelledError):
            await batch
        return graph.callers, retries, graph.tasks["a"].cancelled()

    assert asyncio.run(scenario()) == (["a"], [], True)


def test_a_failure_of_the_call_is_not_retried():
    async def scenario():
        graph = Graph({"a": ValueError("the graph failed"), "b": "answer"})
        with pytest.raises(ValueError, match="the graph failed"):
            await call_in_first_live_context([_context_of("a"), _context_of("b")], graph.call)
        return graph.callers

    assert asyncio.run(scenario()) == ["a"]
