"""The Ingress's metric labels stay bounded whatever paths clients send."""

from serve_app.http_api import metric_route


def test_metric_routes_have_bounded_cardinality():
    assert metric_route("/predict") == "/predict"
    assert metric_route("/tasks") == "/tasks"
    assert metric_route("/tasks/6f1c1b9e-0000-4000-8000-000000000000") == "/tasks/{id}"
    assert metric_route("/wp-admin/../etc") == "other"
