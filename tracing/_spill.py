"""Spans a collector never took: kept on disk instead of dropped.

``tracing.setup()`` puts a ``SpillingSpanExporter`` around every exporter that sends
spans away (OTLP and the ones passed in ``exporters=``). A batch whose export fails — the
collector hung past the exporter's timeout, kept answering 5xx past its retries, or
refused the batch — is appended to the spill file (JSONL, the format of
``JsonlSpanExporter``, redacted) and a ``UnsentSpansWarning`` says where, once per
exporter. At shutdown, ``spill_leftovers`` writes what a processor still queued or an
exporter still had in flight when the deadline came. Delivery is at least once: a batch
spilled at the deadline may still reach a collector that answers later.

Loaded lazily: importing ``tracing`` does not import the SDK.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from tracing._export import redact_span
from tracing._jsonl import span_to_dict
from tracing._warnings import UnsentSpansWarning

__all__ = ["SpillFile", "SpillingSpanExporter", "default_spill_path", "spill_leftovers"]

logger = logging.getLogger("tracing")


def default_spill_path(project: str) -> Path:
    """``$XDG_CACHE_HOME/agentflow/unsent-spans/<project>-<pid>.jsonl`` (``~/.cache``
    when ``XDG_CACHE_HOME`` is unset)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in project) or "spans"
    return Path(cache) / "agentflow" / "unsent-spans" / f"{safe}-{os.getpid()}.jsonl"


class SpillFile:
    """The JSONL file unsent spans go to; created on the first spill. Thread-safe; a
    span (by its span id) is written at most once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._written: set[tuple[int, int]] = set()

    @property
    def count(self) -> int:
        """How many spans were written here."""
        return len(self._written)

    def write(self, spans: Sequence[ReadableSpan]) -> int:
        """Append the spans not written yet (redacted); how many were new."""
        with self._lock:
            fresh = []
            for span in spans:
                ctx = span.context
                key = (ctx.trace_id, ctx.span_id) if ctx is not None else (0, id(span))
                if key not in self._written:
                    self._written.add(key)
                    fresh.append(span)
            if not fresh:
                return 0
            lines = "".join(
                json.dumps(span_to_dict(redact_span(s)), default=str, ensure_ascii=False) + "\n"
                for s in fresh
            )
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(lines)
            except OSError:
                logger.exception(
                    "%d spans could not be sent nor written to %s: they are lost",
                    len(fresh),
                    self.path,
                )
                return 0
            return len(fresh)


def _target(exporter: SpanExporter) -> str:
    endpoint = getattr(exporter, "_endpoint", None)
    return f"{type(exporter).__name__} to {endpoint}" if endpoint else type(exporter).__name__


class SpillingSpanExporter(SpanExporter):
    """Passes batches to ``exporter``; a batch it fails to deliver goes to ``spill``."""

    def __init__(self, exporter: SpanExporter, spill: SpillFile) -> None:
        self.exporter = exporter
        self.spill = spill
        self.target = _target(exporter)
        self._lock = threading.Lock()
        self._in_flight: dict[int, Sequence[ReadableSpan]] = {}
        self._warned = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        key = id(spans)
        with self._lock:
            self._in_flight[key] = spans
        result = SpanExportResult.FAILURE
        try:
            result = self.exporter.export(spans)
        finally:
            with self._lock:
                self._in_flight.pop(key, None)
            if result is not SpanExportResult.SUCCESS:
                self._spill(spans, "the export failed")
        return result

    def unsent(self) -> list[ReadableSpan]:
        """The spans of the batches being exported right now."""
        with self._lock:
            return [span for batch in self._in_flight.values() for span in batch]

    def _spill(self, spans: Sequence[ReadableSpan], why: str) -> None:
        written = self.spill.write(spans)
        if written and not self._warned:
            self._warned = True
            warn_unsent(written, self.target, why, self.spill.path)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.exporter.shutdown()


def warn_unsent(count: int, target: str, why: str, path: Path) -> None:
    message = (
        f"{count} finished spans did not reach {target} ({why}); they were written to "
        f"{path} instead. Check that the collector is up and reachable; read the spans "
        "with tracing.read_spans(path) or `agentflow report PATH`."
    )
    logger.warning(message)
    warnings.warn(message, UnsentSpansWarning, stacklevel=2)


def _queued(processor: BatchSpanProcessor) -> list[ReadableSpan]:
    """Take the spans ``processor`` still queues and stop its worker from sending more.
    (The SDK exposes no API for this; an SDK without these internals yields nothing.)"""
    inner: Any = getattr(processor, "_batch_processor", None)
    queue = getattr(inner, "_queue", None)
    if inner is None or queue is None:
        return []
    inner._shutdown_timeout_exceeded = True  # the worker exports nothing more
    taken: list[ReadableSpan] = []
    while True:
        try:
            taken.append(queue.pop())
        except IndexError:
            return taken


def spill_leftovers(processors: Sequence[BatchSpanProcessor]) -> int:
    """Spill what these (timed-out) processors still hold: their queues and the batches
    their exporters have in flight. Returns how many spans were written (the caller
    warns)."""
    total = 0
    for processor in processors:
        exporter: Any = processor.span_exporter
        while exporter is not None and not isinstance(exporter, SpillingSpanExporter):
            exporter = getattr(exporter, "exporter", None)  # under RedactingSpanExporter
        if exporter is None:
            continue  # a local exporter (JSONL, console): nothing to spill it to
        total += exporter.spill.write(exporter.unsent() + _queued(processor))
    return total
