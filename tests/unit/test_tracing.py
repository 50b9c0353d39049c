"""The OTLP exporter really ships spans to a collector (a local HTTP server standing in for one)."""

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider

from serve_app.tracing import otlp_span_processors


@pytest.fixture
def collector():
    received: list[ExportTraceServiceRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.append(ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()
    server.server_close()


def test_spans_reach_the_collector_named_by_the_standard_variable(collector, monkeypatch):
    endpoint, received = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    provider = TracerProvider()
    processors = otlp_span_processors()
    for processor in processors:
        provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("ingress"), tracer.start_as_current_span("classifier"):
        pass
    provider.force_flush()
    provider.shutdown()
    names = [
        span.name for request in received for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans
    ]
    assert sorted(names) == ["classifier", "ingress"]
