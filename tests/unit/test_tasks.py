import pytest

from serve_app.tasks import REDIS_URL_ENV, task_view

ANSWER = {"predicted_label": [7], "probabilities": [[0.0] * 10], "model_id": "mnist-cnn"}


@pytest.mark.parametrize(
    ("status", "result", "expected"),
    [
        ("PENDING", None, {"state": "pending"}),
        ("STARTED", {"pid": 1, "hostname": "h"}, {"state": "started"}),
        ("RETRY", ValueError("boom"), {"state": "retrying", "error": "ValueError: boom"}),
        ("SUCCESS", ANSWER, {"state": "succeeded", "result": ANSWER}),
        ("SUCCESS", {"unprocessable": True, "detail": "bad shape"}, {"state": "failed", "error": "bad shape"}),
        ("FAILURE", KeyError("m"), {"state": "failed", "error": "KeyError: 'm'"}),
        # Celery's two reads raced: SUCCESS with the STARTED record is still "started".
        ("SUCCESS", {"pid": 1, "hostname": "h"}, {"state": "started"}),
        ("SOMETHING_NEW", None, {"state": "pending"}),
    ],
)
def test_task_view(status, result, expected):
    assert task_view("id", status, result) == {"task_id": "id", **expected}


def test_missing_redis_url_is_a_clear_error(monkeypatch):
    from serve_app.tasks import redis_url

    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    with pytest.raises(RuntimeError, match="asynchronous inference needs Redis"):
        redis_url()
