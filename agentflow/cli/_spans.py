"""Span records for ``agentflow report``: read from a JSONL span file
(``tracing.JsonlSpanExporter``) or a Phoenix project, reduced to what the report needs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from openinference.semconv.trace import SpanAttributes as OI

__all__ = [
    "ReportError",
    "SpanRecord",
    "call_cost",
    "read_jsonl",
    "read_phoenix",
    "to_float",
    "to_int",
]


class ReportError(Exception):
    """A span source that cannot be read; the message is shown to the user."""


@dataclass(frozen=True)
class SpanRecord:
    """One span, from either source, reduced to what the report needs."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str  # openinference.span.kind, "" when absent
    start_ns: int | None
    end_ns: int | None
    error: bool
    attributes: Mapping[str, Any]


def call_cost(attrs: Mapping[str, Any]) -> float:
    """``llm.cost.total``, or prompt + completion when a producer set only those."""
    total = attrs.get(OI.LLM_COST_TOTAL)
    if total is None:
        return to_float(attrs.get(OI.LLM_COST_PROMPT)) + to_float(attrs.get(OI.LLM_COST_COMPLETION))
    return to_float(total)


def to_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def to_float(value: Any) -> float:
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0


# -- reading ---------------------------------------------------------------------------


def _record_from_jsonl(raw: Any, where: str) -> SpanRecord:
    if not isinstance(raw, dict) or not raw.get("span_id") or "attributes" not in raw:
        raise ReportError(f"{where}: not a span record (need span_id, attributes, ...)")
    attrs = raw.get("attributes") or {}
    status = raw.get("status") or {}
    if not isinstance(attrs, dict) or not isinstance(status, dict):
        raise ReportError(f"{where}: attributes and status must be objects")
    return SpanRecord(
        trace_id=str(raw.get("trace_id") or ""),
        span_id=str(raw["span_id"]),
        parent_id=raw.get("parent_id") or None,
        name=str(raw.get("name") or ""),
        kind=str(attrs.get(OI.OPENINFERENCE_SPAN_KIND) or ""),
        start_ns=raw.get("start_time_ns"),
        end_ns=raw.get("end_time_ns"),
        error=status.get("code") == "ERROR",
        attributes=attrs,
    )


def read_jsonl(path: str) -> list[SpanRecord]:
    """The spans of a ``JsonlSpanExporter`` file; ReportError if missing or malformed."""
    import tracing

    file = Path(path)
    if not file.is_file():
        raise ReportError(f"no such span file: {path}")
    records: list[SpanRecord] = []
    try:
        for number, raw in enumerate(tracing.read_spans(file), start=1):
            records.append(_record_from_jsonl(raw, f"{path}: span {number}"))
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"{path}: line {len(records) + 1} is not JSON ({exc.msg}); "
            "expected a file written by tracing.JsonlSpanExporter"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read {path}: {exc}") from exc
    return records


def _ns(value: Any) -> int | None:
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        return int(moment.timestamp() * 1e9)
    return None


def _record_from_phoenix(raw: Mapping[str, Any]) -> SpanRecord:
    context = raw.get("context") or {}
    attrs = raw.get("attributes") or {}
    kind = raw.get("span_kind") or attrs.get(OI.OPENINFERENCE_SPAN_KIND) or ""
    return SpanRecord(
        trace_id=str(context.get("trace_id") or ""),
        span_id=str(context.get("span_id") or raw.get("id") or ""),
        parent_id=raw.get("parent_id") or None,
        name=str(raw.get("name") or ""),
        kind=str(kind).upper(),
        start_ns=_ns(raw.get("start_time")),
        end_ns=_ns(raw.get("end_time")),
        error=str(raw.get("status_code") or "").upper() == "ERROR",
        attributes=attrs,
    )


def read_phoenix(base_url: str, project: str) -> list[SpanRecord]:
    """A Phoenix project's spans; ReportError if Phoenix cannot be reached."""
    from tracing import PhoenixError
    from tracing.phoenix import get_spans

    try:
        raw = get_spans(base_url, project)
    except (PhoenixError, OSError) as exc:
        raise ReportError(
            f"cannot read project {project!r} from Phoenix {base_url}: {exc}"
        ) from exc
    return [_record_from_phoenix(s) for s in raw]


# -- grouping --------------------------------------------------------------------------
