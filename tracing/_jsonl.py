"""A span exporter that appends one JSON object per span to a file, for offline analysis.

Each line holds ``name``, ``kind``, ``trace_id``, ``span_id``, ``parent_id`` (hex, or
null for a root), ``start_time_ns``, ``end_time_ns``, ``status`` (``code``,
``description``), ``attributes``, ``events`` (``name``, ``timestamp_ns``,
``attributes``), ``links``, ``resource`` and ``scope``. ``read_spans(path)`` reads them
back. Loaded lazily: importing ``tracing`` does not import the SDK.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import format_span_id, format_trace_id

__all__ = ["JsonlSpanExporter", "read_spans", "span_to_dict"]


def _value(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_value(v) for v in value]
    return value


def _attrs(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: _value(v) for k, v in (attributes or {}).items()}


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as the JSON-able dict a JSONL line holds."""
    ctx = span.context
    parent = span.parent
    scope = span.instrumentation_scope
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format_trace_id(ctx.trace_id) if ctx else None,
        "span_id": format_span_id(ctx.span_id) if ctx else None,
        "parent_id": format_span_id(parent.span_id) if parent else None,
        "start_time_ns": span.start_time,
        "end_time_ns": span.end_time,
        "status": {
            "code": span.status.status_code.name,
            "description": span.status.description,
        },
        "attributes": _attrs(span.attributes),
        "events": [
            {"name": e.name, "timestamp_ns": e.timestamp, "attributes": _attrs(e.attributes)}
            for e in span.events
        ],
        "links": [
            {
                "trace_id": format_trace_id(link.context.trace_id),
                "span_id": format_span_id(link.context.span_id),
                "attributes": _attrs(link.attributes),
            }
            for link in span.links
        ],
        "resource": _attrs(span.resource.attributes),
        "scope": {"name": scope.name, "version": scope.version} if scope else None,
    }


class JsonlSpanExporter(SpanExporter):
    """Appends finished spans to ``path``, one JSON object per line.

    Thread-safe; each batch is written with a single ``write`` on a file opened for
    appending, so several processes may share one file. The parent directory is created.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Re-entrant: a SIGTERM handler may flush while this thread is mid-export.
        self._lock = threading.RLock()
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(
            json.dumps(span_to_dict(s), default=str, ensure_ascii=False) + "\n" for s in spans
        )
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            try:
                self._file.write(lines)
                self._file.flush()
            except OSError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with self._lock:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
        return True

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_spans(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The spans of a JSONL file written by ``JsonlSpanExporter``, in file order.

    A last line cut short (a process killed mid-write) is skipped.
    """
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                if line.endswith("\n"):
                    raise
