"""The escalation tax for ``agentflow report``: per step (and run), what the answers a
step rejected cost on top of the answers it accepted from a stronger tier.

Read from the LLM spans alone: a scored answer carries ``agentflow.escalation.accepted``;
one accepted above the step's first tier carries ``agentflow.escalation.tax_usd``, the
cost of the answers rejected below it in the same request. Rejected answers at the top
of the ladder, which nothing stronger replaced, are counted in ``rejected_usd`` but are
no tax: the step kept the best of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agentflow.cli._calls import Call
from agentflow.cli._spans import to_float
from tracing import attributes as A

__all__ = ["ESCALATION_COLUMNS", "add_escalation", "escalation", "escalation_rows"]

ESCALATION_COLUMNS = ("scored", "rejected", "rejected USD", "escalated", "tax USD", "tax share")


def escalation(calls: Iterable[Call]) -> dict[str, Any]:
    """``scored`` answers, how many were ``rejected`` and what they cost, how many
    requests were ``escalated`` (accepted above the first tier), their
    ``escalation_tax_usd``, and the tax as a share of the calls' cost."""
    scored = rejected = escalated = 0
    rejected_usd: list[float] = []
    tax: list[float] = []
    spent: list[float] = []
    for call in calls:
        spent.append(call.cost_usd)
        accepted = call.attributes.get(A.AGENTFLOW_ESCALATION_ACCEPTED)
        if accepted is None or call.cache_hit:
            continue
        scored += 1
        if accepted is False:
            rejected += 1
            rejected_usd.append(call.cost_usd)
        value = call.attributes.get(A.AGENTFLOW_ESCALATION_TAX_USD)
        if accepted is True and value is not None:
            escalated += 1
            tax.append(to_float(value))
    total = math.fsum(spent)
    tax_usd = math.fsum(tax)
    return {
        "scored": scored,
        "rejected": rejected,
        "rejected_usd": math.fsum(rejected_usd),
        "escalated": escalated,
        "escalation_tax_usd": tax_usd,
        "escalation_tax_share": tax_usd / total if total > 0 else 0.0,
    }


def add_escalation(summary: dict[str, Any], calls: Sequence[Call]) -> None:
    """Add ``escalation`` to each step, to each run's steps, and to the totals."""
    by_step: dict[str, list[Call]] = {}
    by_run_step: dict[tuple[str, str], list[Call]] = {}
    for call in calls:
        by_step.setdefault(call.step, []).append(call)
        by_run_step.setdefault((call.run, call.step), []).append(call)
    for step, entry in summary.get("steps", {}).items():
        entry["escalation"] = escalation(by_step.get(step, []))
    for run, entry in summary.get("runs", {}).items():
        for step, sub in entry.get("steps", {}).items():
            sub["escalation"] = escalation(by_run_step.get((run, step), []))
    summary.setdefault("totals", {})["escalation"] = escalation(calls)


def escalation_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    """One row per step that scored answers: the text report's escalation table."""
    rows = []
    for step, entry in summary.get("steps", {}).items():
        e = entry.get("escalation")
        if not e or not e["scored"]:
            continue
        rows.append(
            [
                step,
                str(e["scored"]),
                str(e["rejected"]),
                f"{e['rejected_usd']:.8f}",
                str(e["escalated"]),
                f"{e['escalation_tax_usd']:.8f}",
                f"{e['escalation_tax_share']:.1%}",
            ]
        )
    return rows
