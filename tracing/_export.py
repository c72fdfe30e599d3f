"""An exporter wrapper that scrubs credentials from spans on their way out.

``tracing.setup()`` wraps every exporter in it, so even text that reached a span
unredacted (an exception message quoting a key, a status description) leaves the
process clean. Loaded lazily: importing ``tracing`` does not import the SDK.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from tracing._redact import redact

__all__ = ["RedactingSpanExporter", "redact_span"]


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, tuple | list) and any(isinstance(v, str) for v in value):
        return tuple(redact(v) if isinstance(v, str) else v for v in value)
    return value


def _redact_attributes(attributes: Mapping[str, Any] | None) -> tuple[dict[str, Any], bool]:
    out: dict[str, Any] = {}
    changed = False
    for key, value in (attributes or {}).items():
        cleaned = _redact_value(value)
        changed = changed or cleaned != value
        out[key] = cleaned
    return out, changed


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """``span`` itself if it holds no secret, else a copy with every string redacted."""
    attributes, changed = _redact_attributes(span.attributes)
    events = []
    for event in span.events:
        event_attrs, event_changed = _redact_attributes(event.attributes)
        changed = changed or event_changed
        events.append(Event(event.name, event_attrs, event.timestamp, limit=None))
    name = redact(span.name)
    description = span.status.description
    clean_description = redact(description) if description else description
    changed = changed or name != span.name or clean_description != description
    if not changed:
        return span
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code, clean_description),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanExporter(SpanExporter):
    """Passes spans to ``exporter`` with credentials redacted (see ``tracing.redact``)."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.exporter.export([redact_span(s) for s in spans])

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.exporter.shutdown()
