import numpy as np

from serve_app.batching import ModelRequest, group_by_model, merge, split_answer


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
