"""``run.report()``: spent vs. limit, cache and routing savings, then per step and tier:
calls, cache hits, tokens, cost, what the cache saved and what routing saved (against
always calling the zoo's strongest tier; below 0 where escalations cost more)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentflow._context import RunState, Totals

__all__ = ["render_report"]


def _usd(value: Decimal) -> str:
    return f"${value:.6f}"


def _signed_usd(value: Decimal) -> str:
    return f"-{_usd(-value)}" if value < 0 else _usd(value)


def _cached_share(t: Totals) -> str:
    if not t.usage.prompt_tokens:
        return "-"
    return f"{100 * t.usage.cached_prompt_tokens / t.usage.prompt_tokens:.0f}%"


def _hit_rate(t: Totals) -> str:
    if not t.calls:
        return "-"
    return f"{t.cache_hits} ({100 * t.cache_hits / t.calls:.0f}%)"


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        c.ljust(w) if i < 3 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def render_report(run: RunState) -> str:
    t = run.totals
    lines = [
        f"run {run.name!r}: {t.calls} calls, {t.usage.total_tokens} tokens "
        f"({_cached_share(t)} of prompt cached), {_usd(t.cost.total_usd)}"
    ]
    for ledger in (run.ledger, *run.tenant_ledgers):
        if ledger is None:
            continue
        spent, b = ledger.spent(), ledger.budget
        limits: list[tuple[str, Decimal | int | None, Decimal | int]] = [
            ("max_usd", b.max_usd, spent.usd),
            ("max_input_tokens", b.max_input_tokens, spent.input_tokens),
            ("max_output_tokens", b.max_output_tokens, spent.output_tokens),
            ("max_calls", b.max_calls, spent.calls),
        ]
        for label, limit, used in limits:
            if limit is not None:
                share = 100 * Decimal(used) / Decimal(limit)
                lines.append(f"  {ledger.name} {label}: spent {used} of {limit} ({share:.1f}%)")
    if t.cache_hits:
        lines.append(
            f"  response cache: {_hit_rate(t)} of calls answered from the cache, "
            f"saved {_usd(t.saved_usd)}"
        )
    if t.routing_saved_usd:
        lines.append(
            f"  routing: saved {_signed_usd(t.routing_saved_usd)} against calling the "
            "strongest tier every time (rejected answers of escalations included)"
        )
    header = [
        "step",
        "kind",
        "tier",
        "calls",
        "cache hits",
        "prompt",
        "cached",
        "completion",
        "cost",
        "saved",
        "routing",
        "time",
    ]
    rows = [header]
    for summary in run.steps.values():
        for tier, tt in sorted(summary.tiers.items()) or [("-", summary.totals)]:
            rows.append(
                [
                    summary.name,
                    summary.kind,
                    tier,
                    str(tt.calls),
                    _hit_rate(tt),
                    str(tt.usage.prompt_tokens),
                    _cached_share(tt),
                    str(tt.usage.completion_tokens),
                    _usd(tt.cost.total_usd),
                    _usd(tt.saved_usd),
                    _signed_usd(tt.routing_saved_usd),
                    f"{tt.latency_s:.2f}s",
                ]
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines.extend("  " + _row(r, widths) for r in rows)
    return "\n".join(lines)
