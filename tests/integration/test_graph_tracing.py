"""One request through the composed graph yields nested spans under one trace id."""

from __future__ import annotations

import json
import time

SPAN_DIR = ("logs", "serve", "spans")


def read_spans(session_dir) -> list[dict]:
    """Every span Serve's file exporter wrote, each with ``_deployment`` from its file's name.

    Files are ``replica_<app>_<deployment>_<replica>_tracing.json``, each a stream of
    pretty-printed JSON objects.
    """
    decoder = json.JSONDecoder()
    spans = []
    for path in session_dir.joinpath(*SPAN_DIR).glob("replica_*_tracing.json"):
        deployment = path.name.split("_")[2]
        text, position = path.read_text(), 0
        while (start := text.find("{", position)) != -1:
            span, position = decoder.raw_decode(text, start)
            span["_deployment"] = deployment
            spans.append(span)
    return spans


def test_spans_cover_ingress_preprocessor_and_classifier_under_one_trace(local_serve, example_digits):
    images, _ = example_digits
    response = local_serve.post("/predict", json={"image": images[:2].tolist()}, headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 200
    request_id = response.headers.get("x-request-id", "trace-me")

    # Find the Classifier's span for this request, then everything in its trace.
    deadline = time.monotonic() + 30
    mine: list[dict] = []
    while time.monotonic() < deadline:
        spans = read_spans(local_serve.session_dir)
        classifier = [
            s for s in spans if s["_deployment"] == "Classifier" and s["attributes"].get("request_id") == request_id
        ]
        if classifier:
            trace_id = classifier[0]["context"]["trace_id"]
            mine = [s for s in spans if s["context"]["trace_id"] == trace_id]
            if {s["_deployment"] for s in mine} >= {"Ingress", "Preprocessor", "Classifier"}:
                break
        time.sleep(1)
    # The Ingress's span is FastAPI's request span; the others are Serve's replica spans.
    by_deployment = {s["_deployment"]: s for s in mine if s["name"] == "POST /predict"}
    by_deployment |= {
        s["_deployment"]: s
        for s in mine
        if s["name"].startswith("replica_handle_request") and s["_deployment"] != "Ingress"
    }
    assert set(by_deployment) == {"Ingress", "Preprocessor", "Classifier"}, [s["name"] for s in mine]
    assert len({s["context"]["trace_id"] for s in mine}) == 1
    # Nesting: the downstream calls descend from the ingress's span.
    spans_by_id = {s["context"]["span_id"]: s for s in mine}

    def ancestors(span: dict) -> set[str]:
        found = set()
        while span.get("parent_id") in spans_by_id:
            span = spans_by_id[span["parent_id"]]
            found.add(span["context"]["span_id"])
        return found

    ingress_span = by_deployment["Ingress"]["context"]["span_id"]
    assert ingress_span in ancestors(by_deployment["Preprocessor"])
    assert ingress_span in ancestors(by_deployment["Classifier"])
    assert by_deployment["Classifier"]["attributes"]["multiplexed_model_id"] == "mnist-cnn"
