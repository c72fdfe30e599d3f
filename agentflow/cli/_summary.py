"""The machine-readable report: one JSON-ready object per window, which ``agentflow
report --json`` prints and the HTML page is drawn from.

``endpoints``, ``tiers``, ``steps`` and ``runs`` are mappings keyed by their label;
GPU fields are null for endpoints not priced by the GPU-hour. Money is in USD (floats,
as on the spans), times in ms, GPU time in GPU-hours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from agentflow.cli._calls import Call, Calls, Window
from agentflow.cli._economics import SAVING_KINDS, Economics, economics_by, savings
from agentflow.cli._traffic import capacity_hint, latency, traffic
from tracing import attributes as A

__all__ = ["DRILL_DOWN_CALLS", "summarise"]

# calls listed per run in the drill-down; the run's totals always count them all
DRILL_DOWN_CALLS: Final = 200


def _group(calls: Sequence[Call]) -> dict[str, Any]:
    saved = dict.fromkeys(SAVING_KINDS, 0.0)
    for call in calls:
        for kind, usd in savings(call).items():
            saved[kind] += usd
    return {
        "calls": len(calls),
        "errors": sum(c.span.error for c in calls),
        "cache_hits": sum(c.cache_hit for c in calls),
        "prompt_tokens": sum(c.prompt_tokens for c in calls),
        "cached_prompt_tokens": sum(c.cached_tokens for c in calls),
        "completion_tokens": sum(c.completion_tokens for c in calls),
        "usd": sum(c.cost_usd for c in calls),
        "saved_usd": sum(saved.values()),
        "saved": saved,
        **latency(calls),
    }


def _by(calls: Iterable[Call], key: Callable[[Call], str]) -> dict[str, list[Call]]:
    groups: dict[str, list[Call]] = {}
    for call in calls:
        groups.setdefault(key(call), []).append(call)
    return groups


def _economics(econ: Economics) -> dict[str, Any]:
    per_in, per_out = econ.per_mtok(idle=False)
    idle_in, idle_out = econ.per_mtok(idle=True)
    gpu = econ.gpu
    return {
        "pricing": econ.pricing,
        "usd_per_gpu_hour": econ.usd_per_gpu_hour if gpu else None,
        "gpus": econ.gpus if gpu else None,
        "replicas": econ.replicas if gpu else None,
        "provisioned_gpu_hours": econ.provisioned_gpu_hours if gpu else None,
        "busy_gpu_hours": econ.busy_gpu_hours if gpu else None,
        "utilisation": econ.utilisation,
        "idle_usd": econ.idle_usd if gpu else None,
        # the engine's own busy time from its /metrics counters (null: not sampled)
        "engine_busy_gpu_hours": econ.engine_busy_gpu_hours if gpu else None,
        "engine_utilisation": econ.engine_utilisation if gpu else None,
        "engine_busy_source": econ.engine_busy_source if gpu else None,
        "usd_per_mtok_input": per_in,
        "usd_per_mtok_output": per_out,
        "usd_per_mtok_input_with_idle": idle_in if gpu else per_in,
        "usd_per_mtok_output_with_idle": idle_out if gpu else per_out,
    }


def _drill_down(calls: Sequence[Call], since_ns: int) -> list[dict[str, Any]]:
    return [
        {
            "offset_ms": ((c.start_ns or since_ns) - since_ns) / 1e6,
            "latency_ms": c.latency_ms,
            "step": c.step,
            "tier": c.tier,
            "endpoint": c.endpoint,
            "usd": c.cost_usd,
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "cache": str(c.attributes.get(A.AGENTFLOW_CACHE_KIND) or "") if c.cache_hit else "",
            "error": c.span.error,
        }
        for c in calls[:DRILL_DOWN_CALLS]
    ]


def summarise(source: Calls, window: Window, *, bucket_s: int | None = None) -> dict[str, Any]:
    """The report over ``window`` (calls that started inside it) as a JSON-ready dict."""
    calls = [c for c in source.calls if window.holds(c.start_ns)]
    econ_endpoints, econ_tiers = economics_by(calls, source.calls, window, source.other_spans)
    by_endpoint = _by(calls, lambda c: c.endpoint)
    by_tier = _by(calls, lambda c: c.tier)

    tier_of: dict[str, str] = {}
    for call in source.calls:
        tier_of.setdefault(call.endpoint, call.tier)
    endpoints: dict[str, Any] = {}
    for name, econ in sorted(econ_endpoints.items()):
        endpoints[name] = {
            "tier": tier_of.get(name, "(none)"),
            **_group(by_endpoint.get(name, [])),
            **_economics(econ),
        }
    tiers: dict[str, Any] = {}
    for name, econ in sorted(econ_tiers.items()):
        entry = {**_group(by_tier.get(name, [])), **_economics(econ)}
        if econ.gpu and econ.gpus:
            entry["capacity"] = capacity_hint(
                by_tier.get(name, []), window, econ.replicas, econ.gpus
            )
        tiers[name] = entry
    steps = {name: _group(group) for name, group in sorted(_by(calls, lambda c: c.step).items())}
    runs: dict[str, Any] = {}
    for name, group in _by(calls, lambda c: c.run).items():
        first = min((c.start_ns for c in group if c.start_ns is not None), default=None)
        runs[name] = {
            **_group(group),
            "start_ms": None if first is None else (first - window.since_ns) / 1e6,
            "steps": {s: _group(g) for s, g in _by(group, lambda c: c.step).items()},
            "calls_listed": _drill_down(group, first or window.since_ns),
        }
    everything = _group(calls)
    gpu = [e for e in econ_endpoints.values() if e.gpu]
    return {
        "window": window.as_json(),
        "span_count": source.span_count,
        "totals": {
            **{k: everything[k] for k in ("calls", "errors", "usd", "saved_usd", "saved")},
            "provisioned_gpu_hours": sum(e.provisioned_gpu_hours for e in gpu),
            "busy_gpu_hours": sum(e.busy_gpu_hours for e in gpu),
            "idle_usd": sum(e.idle_usd for e in gpu),
        },
        "endpoints": endpoints,
        "tiers": tiers,
        "steps": steps,
        "runs": runs,
        "traffic": traffic(calls, window, bucket_s).as_json(),
    }
