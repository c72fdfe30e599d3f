"""Read spans and costs back from a Phoenix server."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any, Final

from tracing._errors import PhoenixError
from tracing.phoenix._http import get_json, graphql

__all__ = ["CostSummary", "get_spans", "project_cost", "trace_cost"]


@dataclass(frozen=True)
class CostSummary:
    """Phoenix's cost summary of a trace or project: USD and tokens.

    Costs are None when Phoenix could price none of the spans (no model matched).
    """

    prompt_cost: float | None
    completion_cost: float | None
    total_cost: float | None
    prompt_tokens: float | None
    completion_tokens: float | None
    total_tokens: float | None

    @classmethod
    def from_graphql(cls, summary: dict[str, Any]) -> CostSummary:
        def part(name: str, key: str) -> float | None:
            value = (summary.get(name) or {}).get(key)
            return None if value is None else float(value)

        return cls(
            prompt_cost=part("prompt", "cost"),
            completion_cost=part("completion", "cost"),
            total_cost=part("total", "cost"),
            prompt_tokens=part("prompt", "tokens"),
            completion_tokens=part("completion", "tokens"),
            total_tokens=part("total", "tokens"),
        )


_SUMMARY_FIELDS: Final = (
    "costSummary { prompt { cost tokens } completion { cost tokens } total { cost tokens } }"
)
_TRACE_COST: Final = (
    "query ($traceId: String!) { getTraceByOtelId(traceId: $traceId) { " + _SUMMARY_FIELDS + " } }"
)
_PROJECT_COST: Final = (
    "query ($name: String!) { getProjectByName(name: $name) { " + _SUMMARY_FIELDS + " } }"
)


def get_spans(
    base_url: str,
    project: str,
    *,
    api_key: str | None = None,
    timeout: float = 10.0,
    page_size: int = 1000,
) -> list[dict[str, Any]]:
    """Every span of ``project`` (``GET /v1/projects/{project}/spans``, all pages).

    Each span is Phoenix's JSON: ``name``, ``context.trace_id``/``span_id``,
    ``parent_id``, ``span_kind``, ``status_code``, ``attributes`` (flattened), ``events``.
    A project Phoenix has not seen yet gives an empty list.
    """
    base = f"{base_url.rstrip('/')}/v1/projects/{urllib.parse.quote(project, safe='')}/spans"
    spans: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {"limit": str(page_size)}
        if cursor:
            query["cursor"] = cursor
        try:
            page = get_json(
                f"{base}?{urllib.parse.urlencode(query)}", api_key=api_key, timeout=timeout
            )
        except PhoenixError as error:
            if "HTTP 404" in str(error):
                return spans
            raise
        spans.extend(page.get("data") or ())
        cursor = page.get("next_cursor")
        if not cursor:
            return spans


def trace_cost(
    base_url: str, trace_id: str | int, *, api_key: str | None = None, timeout: float = 10.0
) -> CostSummary | None:
    """Phoenix's cost summary of one trace (OTel trace id, hex or int); None if unknown."""
    if isinstance(trace_id, int):
        trace_id = f"{trace_id:032x}"
    data = graphql(base_url, _TRACE_COST, {"traceId": trace_id}, api_key=api_key, timeout=timeout)
    trace = data.get("getTraceByOtelId")
    return None if trace is None else CostSummary.from_graphql(trace["costSummary"])


def project_cost(
    base_url: str, project: str, *, api_key: str | None = None, timeout: float = 10.0
) -> CostSummary | None:
    """Phoenix's cost summary of a whole project; None if Phoenix has no such project."""
    data = graphql(base_url, _PROJECT_COST, {"name": project}, api_key=api_key, timeout=timeout)
    found = data.get("getProjectByName")
    return None if found is None else CostSummary.from_graphql(found["costSummary"])
