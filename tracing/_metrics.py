"""GenAI client metrics and agentflow's cost and cache counters.

=========================================  =============  ========================
instrument                                 unit           kind
=========================================  =============  ========================
``gen_ai.client.token.usage``              ``{token}``    histogram (per token type)
``gen_ai.client.operation.duration``       ``s``          histogram
``gen_ai.client.operation.time_to_first_chunk``  ``s``    histogram (streams)
``agentflow.cost``                         ``USD``        counter
``agentflow.cache.hits``                   ``{hit}``      counter
``agentflow.cost.saved``                   ``USD``        counter
=========================================  =============  ========================

Bucket boundaries are the GenAI semantic conventions' advice. Instruments are created
lazily from a meter (by default the global ``get_meter("agentflow")``), so recording
before ``setup()`` is harmless and recording after it reaches its exporters.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, SupportsFloat

from opentelemetry.util.types import AttributeValue

from tracing import _conventions as c

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider

__all__ = [
    "DURATION_BUCKETS",
    "TOKEN_BUCKETS",
    "Metrics",
    "record_cache_hit",
    "record_call",
]

METER_NAME: Final = "agentflow"

TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip

TOKEN_USAGE: Final = "gen_ai.client.token.usage"
OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
COST: Final = "agentflow.cost"
CACHE_HITS: Final = "agentflow.cache.hits"
COST_SAVED: Final = "agentflow.cost.saved"


def _histogram(
    meter: Meter, name: str, unit: str, description: str, buckets: tuple[float, ...]
) -> Histogram:
    try:
        return meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
        )
    except TypeError:  # opentelemetry-api before 1.23 has no bucket advisory
        return meter.create_histogram(name, unit=unit, description=description)


class Metrics:
    """The instruments, made on first use from ``meter_provider`` (default: global)."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        self._meter_provider = meter_provider
        self._lock = threading.Lock()
        self._made = False

    def _make(self) -> None:
        with self._lock:
            if self._made:
                return
            from opentelemetry import metrics

            meter = metrics.get_meter(METER_NAME, meter_provider=self._meter_provider)
            self.token_usage = _histogram(
                meter, TOKEN_USAGE, "{token}", "Number of input and output tokens used.",
                TOKEN_BUCKETS,
            )  # fmt: skip
            self.operation_duration = _histogram(
                meter, OPERATION_DURATION, "s", "GenAI operation duration.", DURATION_BUCKETS
            )
            self.time_to_first_chunk = _histogram(
                meter, TIME_TO_FIRST_CHUNK, "s",
                "Time from the request to the first chunk of a streamed response.",
                DURATION_BUCKETS,
            )  # fmt: skip
            self.cost: Counter = meter.create_counter(
                COST, unit="USD", description="Cost of model calls."
            )
            self.cache_hits: Counter = meter.create_counter(
                CACHE_HITS, unit="{hit}", description="Answers served from agentflow's cache."
            )
            self.cost_saved: Counter = meter.create_counter(
                COST_SAVED, unit="USD", description="Cost avoided by cache hits."
            )
            self._made = True

    def record_call(
        self,
        *,
        model: str,
        provider: str,
        operation: str = "chat",
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        duration_s: float | None = None,
        cost_usd: SupportsFloat | None = None,
        error_type: str | None = None,
        ttft_s: float | None = None,
        response_model: str | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        """Record one model call. ``attributes`` adds low-cardinality dimensions (tier,
        endpoint); never put user ids or prompts there."""
        self._make()
        attrs: dict[str, AttributeValue] = {
            c.GEN_AI_OPERATION_NAME: operation,
            c.GEN_AI_PROVIDER_NAME: provider,
            c.GEN_AI_REQUEST_MODEL: model,
        }
        if response_model is not None:
            attrs[c.GEN_AI_RESPONSE_MODEL] = response_model
        if attributes:
            attrs.update(attributes)
        if input_tokens is not None:
            self.token_usage.record(input_tokens, {**attrs, c.GEN_AI_TOKEN_TYPE: "input"})
        if output_tokens is not None:
            self.token_usage.record(output_tokens, {**attrs, c.GEN_AI_TOKEN_TYPE: "output"})
        if ttft_s is not None:
            self.time_to_first_chunk.record(ttft_s, attrs)
        if cost_usd is not None and float(cost_usd) > 0:
            self.cost.add(float(cost_usd), attrs)
        if duration_s is not None:
            duration_attrs = attrs if error_type is None else {**attrs, c.ERROR_TYPE: error_type}
            self.operation_duration.record(duration_s, duration_attrs)

    def record_cache_hit(
        self,
        *,
        kind: str,
        saved_usd: SupportsFloat,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        """Record an answer served from the cache and what it saved."""
        self._make()
        attrs: dict[str, AttributeValue] = {c.AGENTFLOW_CACHE_KIND: kind, **(attributes or {})}
        self.cache_hits.add(1, attrs)
        if float(saved_usd) > 0:
            self.cost_saved.add(float(saved_usd), attrs)


_default: Metrics | None = None
_default_lock = threading.Lock()


def _global() -> Metrics:
    global _default
    with _default_lock:
        if _default is None:
            _default = Metrics()
        return _default


def record_call(
    model: str,
    provider: str,
    operation: str = "chat",
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    duration_s: float | None = None,
    cost_usd: SupportsFloat | None = None,
    error_type: str | None = None,
    ttft_s: float | None = None,
    *,
    response_model: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> None:
    """Record one model call on the global meter provider (see ``Metrics.record_call``)."""
    _global().record_call(
        model=model,
        provider=provider,
        operation=operation,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        duration_s=duration_s,
        cost_usd=cost_usd,
        error_type=error_type,
        ttft_s=ttft_s,
        response_model=response_model,
        attributes=attributes,
    )


def record_cache_hit(
    kind: str,
    saved_usd: SupportsFloat,
    *,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> None:
    """Record a cache hit on the global meter provider."""
    _global().record_cache_hit(kind=kind, saved_usd=saved_usd, attributes=attributes)
