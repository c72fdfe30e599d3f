"""The tracer provider the benchmarks install: an SDK TracerProvider with a batch
processor and an exporter that drops spans, so building, attributing and queueing spans
is measured, not the cost of a backend. Import it before agentflow, as an application
would configure its provider first."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

__all__ = ["DropExporter", "install_drop_provider"]


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def install_drop_provider() -> TracerProvider:
    """Set (and return) the global provider: batch processor, spans dropped."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DropExporter(), max_queue_size=100_000))
    trace.set_tracer_provider(provider)
    return provider
