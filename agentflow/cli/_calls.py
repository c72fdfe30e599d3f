"""Calls for ``agentflow report``: the LLM and EMBEDDING spans of a span source, each
labelled with its run (the AGENT ancestor), step (nearest ancestor with
``agentflow.step.name``), tier and endpoint; and the time window a report covers.

Only calls are summed: the roll-ups on run and step spans would count everything twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Final

from openinference.semconv.trace import SpanAttributes as OI

from agentflow.cli._spans import ReportError, SpanRecord, call_cost, to_float, to_int
from tracing import attributes as A

__all__ = ["Call", "Calls", "Window", "label_calls", "parse_moment"]

_CALL_KINDS: Final = frozenset({"LLM", "EMBEDDING"})
_NONE: Final = "(none)"


@dataclass(frozen=True, eq=False)
class Call:
    """One LLM or EMBEDDING span (one attempt, or one cache hit) and where it belongs.

    Its figures are read from the span once; ``memo`` holds what other modules derive
    from it (pricing, savings, GPU time), so a report over many groups computes each
    call's figures once."""

    span: SpanRecord
    run: str
    run_key: tuple[str, str] | None
    step: str
    tier: str
    endpoint: str
    memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def attributes(self) -> Mapping[str, Any]:
        return self.span.attributes

    @property
    def start_ns(self) -> int | None:
        return self.span.start_ns

    @cached_property
    def latency_ms(self) -> float | None:
        if self.span.start_ns is None or self.span.end_ns is None:
            return None
        return (self.span.end_ns - self.span.start_ns) / 1e6

    @cached_property
    def ttft_ms(self) -> float | None:
        value = self.attributes.get(A.AGENTFLOW_TTFT_S)
        return None if value is None else to_float(value) * 1000

    @cached_property
    def prompt_tokens(self) -> int:
        return to_int(self.attributes.get(OI.LLM_TOKEN_COUNT_PROMPT))

    @cached_property
    def cached_tokens(self) -> int:
        return to_int(self.attributes.get(OI.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_READ))

    @cached_property
    def completion_tokens(self) -> int:
        return to_int(self.attributes.get(OI.LLM_TOKEN_COUNT_COMPLETION))

    @cached_property
    def cost_usd(self) -> float:
        return call_cost(self.attributes)

    @cached_property
    def cache_hit(self) -> bool:
        return self.attributes.get(A.AGENTFLOW_CACHE_HIT) is True

    @cached_property
    def cache_saved_usd(self) -> float:
        """What a response-cache hit saved (0 for calls that reached a model)."""
        return to_float(self.attributes.get(A.AGENTFLOW_COST_SAVED_USD)) if self.cache_hit else 0.0


@dataclass(frozen=True)
class Calls:
    """The calls of a span source; ``runs`` maps a run span's (trace, span) id to its
    label and span."""

    calls: list[Call]
    runs: dict[tuple[str, str], tuple[str, SpanRecord]]
    span_count: int
    other_spans: list[SpanRecord] = field(default_factory=list)  # runs, steps, ...


def label_calls(spans: Iterable[SpanRecord]) -> Calls:
    """Label every LLM and EMBEDDING span with its run, step, tier and endpoint.

    A span seen twice (same trace and span id, e.g. in both the file and Phoenix) counts
    once: the first copy wins.
    """
    by_id: dict[tuple[str, str], SpanRecord] = {}
    for span in spans:
        by_id.setdefault((span.trace_id, span.span_id), span)

    def ancestors(span: SpanRecord) -> Iterable[SpanRecord]:
        seen: set[str] = set()
        parent_id = span.parent_id
        while parent_id and parent_id not in seen:
            seen.add(parent_id)
            parent = by_id.get((span.trace_id, parent_id))
            if parent is None:
                return
            yield parent
            parent_id = parent.parent_id

    run_spans = [s for s in by_id.values() if s.kind == "AGENT"]
    names = [_run_name(s) for s in run_spans]
    runs = {
        (s.trace_id, s.span_id): (
            name if names.count(name) == 1 else f"{name} [{s.span_id[:8]}]",
            s,
        )
        for s, name in zip(run_spans, names, strict=True)
    }
    calls: list[Call] = []
    other_spans: list[SpanRecord] = []
    for span in by_id.values():
        if span.kind not in _CALL_KINDS:
            other_spans.append(span)
            continue
        run_key: tuple[str, str] | None = None
        step = ""
        for parent in ancestors(span):
            if not step and parent.attributes.get(A.AGENTFLOW_STEP_NAME):
                step = str(parent.attributes[A.AGENTFLOW_STEP_NAME])
            if parent.kind == "AGENT":
                run_key = (parent.trace_id, parent.span_id)
                break
        attrs = span.attributes
        endpoint = attrs.get(A.AGENTFLOW_ENDPOINT) or attrs.get(OI.LLM_MODEL_NAME) or _NONE
        calls.append(
            Call(
                span=span,
                run=runs[run_key][0] if run_key else "(no run)",
                run_key=run_key,
                step=step or "(no step)",
                tier=str(attrs.get(A.AGENTFLOW_TIER) or _NONE),
                endpoint=str(endpoint),
            )
        )
    calls.sort(key=lambda c: (c.start_ns or 0, c.span.span_id))
    return Calls(calls, runs, len(by_id), other_spans)


def _run_name(span: SpanRecord) -> str:
    name = span.attributes.get(A.AGENTFLOW_RUN_NAME)
    return str(name) if name else span.name


# -- the window ------------------------------------------------------------------------


def parse_moment(text: str) -> int:
    """Nanoseconds since the epoch from ISO 8601 (naive means UTC) or epoch seconds."""
    try:
        return int(float(text) * 1e9)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(
            f"--since/--until take an ISO 8601 time (2026-12-07T09:30:00, UTC unless it "
            f"says otherwise) or seconds since the epoch; got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


@dataclass(frozen=True)
class Window:
    """The half-open time window ``[since_ns, until_ns)`` a report covers; a call belongs
    to it when it starts inside it."""

    since_ns: int
    until_ns: int

    @classmethod
    def over(cls, source: Calls, since: int | None, until: int | None) -> Window:
        """The window from ``since`` to ``until``; a bound left out is the first call's
        start or the last call's end (the calls seen are then all inside), or the first
        and last span's without any call."""
        spans = [c.span for c in source.calls] or source.other_spans
        starts = [s.start_ns for s in spans if s.start_ns is not None]
        ends = [s.end_ns or s.start_ns or 0 for s in spans if s.start_ns is not None]
        lo = since if since is not None else min(starts, default=0)
        hi = until if until is not None else max(ends, default=lo) + 1
        if hi <= lo:
            raise ReportError(
                f"the window is empty: --until ({_iso(hi)}) is not after --since "
                f"({_iso(lo)}); give an --until later than --since"
            )
        return cls(lo, hi)

    @property
    def seconds(self) -> float:
        return (self.until_ns - self.since_ns) / 1e9

    def holds(self, ns: int | None) -> bool:
        return ns is not None and self.since_ns <= ns < self.until_ns

    def as_json(self) -> dict[str, Any]:
        return {
            "since": _iso(self.since_ns),
            "until": _iso(self.until_ns),
            "seconds": self.seconds,
        }


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="milliseconds")
