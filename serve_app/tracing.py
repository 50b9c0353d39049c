"""Span exporters for Serve's tracing (``tracing_config.exporter_import_path``).

Serve traces every sampled request through the graph (the ingress's FastAPI spans, then
one ``replica_handle_request`` span per deployment call) when the Serve config has::

    tracing_config:
      enabled: true
      sampling_ratio: 0.01
      exporter_import_path: serve_app.tracing:otlp_span_processors   # omit: spans go to files

Without ``exporter_import_path`` Serve's built-in exporter writes the spans as JSON to
``<ray session>/logs/serve/spans/`` (what ``python -m serve_app.local --trace`` uses). With
it, spans go over OTLP/HTTP to the collector named by the standard OpenTelemetry variables
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), which the Helm
chart sets from ``tracing.otlpEndpoint``.
"""

from __future__ import annotations

from opentelemetry.sdk.trace import SpanProcessor


def otlp_span_processors() -> list[SpanProcessor]:
    """One batching processor that exports spans over OTLP/HTTP (Serve calls this with no arguments)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return [BatchSpanProcessor(OTLPSpanExporter())]
