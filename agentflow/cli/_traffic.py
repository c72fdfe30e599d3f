"""Latency and traffic for ``agentflow report``: percentiles, calls and tokens over time,
peak-to-mean, and a capacity hint for GPU-hour tiers.

Latency percentiles are nearest-rank over the calls that reached a model: a cache hit's
span has no model time in it and would pull p50 towards zero. Time to first token comes
from ``agentflow.ttft_s``, which streamed calls carry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from agentflow.cli._calls import Call, Window
from agentflow.cli._economics import call_busy_gpu_hours, savings

__all__ = [
    "BUSY_TARGET",
    "Bucket",
    "Traffic",
    "capacity_hint",
    "latency",
    "percentile",
    "traffic",
]

# The share of a replica's GPU time the capacity hint plans to fill at the peak: beyond
# about 70 % busy, queueing makes tail latency climb fast.
BUSY_TARGET: Final = 0.7
_BUCKETS_S: Final = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
_MAX_BUCKETS: Final = 60


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latency(calls: Iterable[Call]) -> dict[str, float | None]:
    """p50/p95/p99 of latency and of time to first token, in ms."""
    timed = [c for c in calls if not c.cache_hit]
    latencies = [ms for c in timed if (ms := c.latency_ms) is not None]
    ttfts = [ms for c in timed if (ms := c.ttft_ms) is not None]
    out: dict[str, float | None] = {}
    for p in (50, 95, 99):
        out[f"p{p}_ms"] = percentile(latencies, p)
    for p in (50, 95, 99):
        out[f"ttft_p{p}_ms"] = percentile(ttfts, p)
    return out


@dataclass
class Bucket:
    """The calls that started in ``[start_s, start_s + width)`` of the window."""

    start_s: float
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    saved_usd: float = 0.0
    busy_gpu_s: float = 0.0  # GPU-hour endpoints only

    def as_json(self) -> dict[str, Any]:
        return {
            "start_s": self.start_s,
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "usd": self.usd,
            "saved_usd": self.saved_usd,
        }


@dataclass
class Traffic:
    bucket_s: int
    buckets: list[Bucket]
    window_s: float

    def _per_min(self, total: float) -> float:
        return total * 60 / self.window_s if self.window_s else 0.0

    def as_json(self) -> dict[str, Any]:
        calls = sum(b.calls for b in self.buckets)
        tokens = sum(b.prompt_tokens + b.completion_tokens for b in self.buckets)
        peak_calls = max((b.calls for b in self.buckets), default=0)
        peak_tokens = max((b.prompt_tokens + b.completion_tokens for b in self.buckets), default=0)
        mean_calls = calls / len(self.buckets) if self.buckets else 0.0
        return {
            "bucket_s": self.bucket_s,
            "calls_per_min": self._per_min(calls),
            "tokens_per_min": self._per_min(tokens),
            "peak_calls_per_min": peak_calls * 60 / self.bucket_s,
            "peak_tokens_per_min": peak_tokens * 60 / self.bucket_s,
            # the busiest bucket over the mean bucket
            "peak_to_mean": peak_calls / mean_calls if mean_calls else None,
            "buckets": [b.as_json() for b in self.buckets],
        }


def _bucket_s(window_s: float) -> int:
    for size in _BUCKETS_S:
        if window_s / size <= _MAX_BUCKETS:
            return size
    return math.ceil(window_s / _MAX_BUCKETS)


def traffic(calls: Iterable[Call], window: Window, bucket_s: int | None = None) -> Traffic:
    """Calls, tokens, dollars and GPU-busy seconds per bucket of the window (at most
    60 buckets of 1 s, 2 s, 5 s, ... unless ``bucket_s`` is given)."""
    size = bucket_s or _bucket_s(window.seconds)
    buckets = [Bucket(i * size) for i in range(max(1, math.ceil(window.seconds / size)))]
    for call in calls:
        if call.start_ns is None:
            continue
        index = min(len(buckets) - 1, int((call.start_ns - window.since_ns) / 1e9 // size))
        bucket = buckets[index]
        bucket.calls += 1
        bucket.prompt_tokens += call.prompt_tokens
        bucket.completion_tokens += call.completion_tokens
        bucket.usd += call.cost_usd
        bucket.saved_usd += sum(savings(call).values())
        bucket.busy_gpu_s += sum(call_busy_gpu_hours(call)) * 3600
    return Traffic(size, buckets, window.seconds)


def capacity_hint(
    tier_calls: Sequence[Call], window: Window, replicas: int, gpus: int
) -> dict[str, Any]:
    """Replicas of ``gpus`` GPUs each that keep the tier at most ``BUSY_TARGET`` busy in
    its busiest bucket, from the calibrated throughput on its spans."""
    shape = traffic(tier_calls, window)
    peak = max(shape.buckets, key=lambda b: b.busy_gpu_s)
    peak_busy_gpus = peak.busy_gpu_s / shape.bucket_s
    return {
        "bucket_s": shape.bucket_s,
        "peak_busy_gpus": peak_busy_gpus,
        "replicas_up": replicas,
        "replicas_for_peak": max(1, math.ceil(peak_busy_gpus / gpus / BUSY_TARGET)),
        "busy_target": BUSY_TARGET,
    }
