#!/usr/bin/env python3
"""Sends spans with the real OpenTelemetry Python SDK and its OTLP exporters (HTTP/protobuf and
gRPC) to a Flywheel collector. Exits non-zero unless every export reported SUCCESS.

usage: otel_sdk_send.py --http http://127.0.0.1:4318 --grpc 127.0.0.1:4317 --run RUN_ID [--spans N]
"""
import argparse
import sys

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class Recording(SpanExporter):
    """Delegates to a real exporter and remembers every result."""

    def __init__(self, inner):
        self.inner = inner
        self.results = []

    def export(self, spans):
        result = self.inner.export(spans)
        self.results.append(result)
        return result

    def shutdown(self):
        self.inner.shutdown()


def send(exporter, transport, run, n):
    rec = Recording(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": f"e2e-{transport}"}))
    provider.add_span_processor(SimpleSpanProcessor(rec))
    tracer = provider.get_tracer("flywheel.e2e", "1.0")
    for i in range(n):
        with tracer.start_as_current_span(f"chat gpt-4o-mini {transport} {run}") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.request.model", "gpt-4o-mini")
            span.set_attribute("gen_ai.usage.input_tokens", 40 + i)
            span.set_attribute("flywheel.e2e.run", run)
            span.set_attribute("flywheel.e2e.index", i)
    provider.shutdown()
    ok = all(r == SpanExportResult.SUCCESS for r in rec.results)
    print(f"{transport}: {len(rec.results)} exports, success={ok}")
    return ok and len(rec.results) == n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--spans", type=int, default=5)
    a = ap.parse_args()
    ok = send(HttpExporter(endpoint=f"{a.http}/v1/traces"), "http", a.run, a.spans)
    ok &= send(GrpcExporter(endpoint=a.grpc, insecure=True), "grpc", a.run, a.spans)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
