import numpy as np

from serve_app.batching import ModelRequest, group_by_model, split_rows


def test_requests_are_grouped_per_model_in_arrival_order():
    requests = [ModelRequest(m, np.zeros((1, 1, 28, 28))) for m in ["a", "b", "a", "c", "b"]]
    assert group_by_model(requests) == {"a": [0, 2], "b": [1, 4], "c": [3]}


def test_split_rows_returns_each_requests_rows():
    merged = np.arange(6)
    parts = split_rows(merged, [1, 3, 2])
    assert [p.tolist() for p in parts] == [[0], [1, 2, 3], [4, 5]]
    assert [p.tolist() for p in split_rows(np.arange(2), [2])] == [[0, 1]]
