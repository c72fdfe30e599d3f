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
``agentflow.replica.health``               ``{event}``    counter (cooldown, probe, recovered)
``agentflow.calls``                        ``{call}``     counter (per cache outcome, status)
``agentflow.tokens``                       ``{token}``    counter (per ``agentflow.token.kind``)
``agentflow.calls.in_flight``              ``{call}``     up-down counter
``agentflow.budget.alerts``                ``{alert}``    counter (scope, limit, threshold)
=========================================  =============  ========================

Bucket boundaries are the GenAI semantic conventions' advice. Instruments are created
lazily from a meter: ``Metrics(meter_provider)``'s, or by default ``tracing.meter()``'s
(the provider given to ``tracing.use_providers()``, else the global one). So recording
before ``setup()`` is harmless, recording after it reaches its exporters, and the default
instruments are made again whenever ``use_providers()`` changes the meter provider.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, SupportsFloat

from opentelemetry.util.types import AttributeValue

import tracing._conventions as c
from tracing._providers import SCOPE_NAME
from tracing._providers import meter as current_meter

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider, UpDownCounter

__all__ = [
    "DURATION_BUCKETS",
    "TOKEN_BUCKETS",
    "Metrics",
    "record_budget_alert",
    "record_cache_hit",
    "record_call",
    "record_in_flight",
    "record_replica_event",
]

METER_NAME: Final = SCOPE_NAME

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
REPLICA_HEALTH: Final = "agentflow.replica.health"
CALLS: Final = "agentflow.calls"
TOKENS: Final = "agentflow.tokens"
IN_FLIGHT: Final = "agentflow.calls.in_flight"
BUDGET_ALERTS: Final = "agentflow.budget.alerts"
# the budget alert's dimensions (bounded: never the tenant's id)
BUDGET_SCOPE: Final = "agentflow.budget.scope"
BUDGET_LIMIT: Final = "agentflow.budget.limit"
BUDGET_THRESHOLD: Final = "agentflow.budget.threshold"


def _histogram(
    meter: Meter, name: str, unit: str, description: str, buckets: tuple[float, ...]
) -> Histogram:
    try:
        return meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
        )
    except TypeError:  # opentelemetry-api before 1.23 has no bucket advisory
        return meter.create_histogram(name, unit=unit, description=description)


class _Instruments:
    """The instruments, made from one meter."""

    __slots__ = (
        "budget_alerts",
        "cache_hits",
        "calls",
        "cost",
        "cost_saved",
        "in_flight",
        "meter",
        "operation_duration",
        "replica_health",
        "time_to_first_chunk",
        "token_usage",
        "tokens",
    )

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
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
        self.replica_health: Counter = meter.create_counter(
            REPLICA_HEALTH,
            unit="{event}",
            description="Replica cooldowns, half-open probes and recoveries.",
        )
        self.calls: Counter = meter.create_counter(
            CALLS, unit="{call}", description="Model calls and cache hits, by outcome."
        )
        self.tokens: Counter = meter.create_counter(
            TOKENS, unit="{token}", description="Tokens by kind (uncached/cached input, output)."
        )
        self.in_flight: UpDownCounter = meter.create_up_down_counter(
            IN_FLIGHT, unit="{call}", description="Model calls sent and not yet answered."
        )
        self.budget_alerts: Counter = meter.create_counter(
            BUDGET_ALERTS, unit="{alert}", description="Budget soft thresholds reached."
        )


class Metrics:
    """The instruments, made on first use from ``meter_provider``.

    With no ``meter_provider`` they follow ``tracing.meter()``: the provider injected by
    ``tracing.use_providers()``, else the global one, made again when that changes.
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        self._meter_provider = meter_provider
        self._lock = threading.Lock()
        self._made: _Instruments | None = None

    def _instruments(self) -> _Instruments:
        """The instruments of the meter in use now, made again when that meter changes."""
        made = self._made
        if made is not None and (
            self._meter_provider is not None or made.meter is current_meter(METER_NAME)
        ):
            return made
        with self._lock:
            if self._meter_provider is None:
                meter = current_meter(METER_NAME)
            else:
                meter = self._meter_provider.get_meter(METER_NAME)
            made = self._made
            if made is None or made.meter is not meter:
                made = self._made = _Instruments(meter)
            return made

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
        cached_input_tokens: int | None = None,
    ) -> None:
        """Record one model call. ``attributes`` adds low-cardinality dimensions (tier,
        endpoint); never put user ids or prompts there. ``agentflow.calls`` counts it
        with ``agentflow.status`` ok or error; ``agentflow.tokens`` counts its tokens by
        kind, ``cached_input_tokens`` being part of ``input_tokens``."""
        made = self._instruments()
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
            made.token_usage.record(input_tokens, {**attrs, c.GEN_AI_TOKEN_TYPE: "input"})
        if output_tokens is not None:
            made.token_usage.record(output_tokens, {**attrs, c.GEN_AI_TOKEN_TYPE: "output"})
        if ttft_s is not None:
            made.time_to_first_chunk.record(ttft_s, attrs)
        if cost_usd is not None and float(cost_usd) > 0:
            made.cost.add(float(cost_usd), attrs)
        if duration_s is not None:
            duration_attrs = attrs if error_type is None else {**attrs, c.ERROR_TYPE: error_type}
            made.operation_duration.record(duration_s, duration_attrs)
        made.calls.add(1, {**attrs, c.AGENTFLOW_STATUS: "ok" if error_type is None else "error"})
        cached = min(cached_input_tokens or 0, input_tokens or 0)
        for kind, count in (
            ("input_uncached", (input_tokens or 0) - cached),
            ("input_cached", cached),
            ("output", output_tokens or 0),
        ):
            if count:
                made.tokens.add(count, {**attrs, c.AGENTFLOW_TOKEN_KIND: kind})

    def record_cache_hit(
        self,
        *,
        kind: str,
        saved_usd: SupportsFloat,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        """Record an answer served from the cache and what it saved."""
        made = self._instruments()
        attrs: dict[str, AttributeValue] = {c.AGENTFLOW_CACHE_KIND: kind, **(attributes or {})}
        made.cache_hits.add(1, attrs)
        if float(saved_usd) > 0:
            made.cost_saved.add(float(saved_usd), attrs)
        outcome = {c.AGENTFLOW_CACHE_OUTCOME: kind, c.AGENTFLOW_STATUS: "ok"}
        made.calls.add(1, {**(attributes or {}), **outcome})

    def record_in_flight(
        self, delta: int, attributes: Mapping[str, AttributeValue] | None = None
    ) -> None:
        """A call was sent (+1) or answered, failed or abandoned (-1)."""
        self._instruments().in_flight.add(delta, attributes)

    def record_replica_event(
        self, *, event: str, endpoint: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> None:
        """Record a replica health event: ``cooldown``, ``probe`` or ``recovered``."""
        attrs: dict[str, AttributeValue] = {
            c.AGENTFLOW_REPLICA_EVENT: event,
            c.AGENTFLOW_ENDPOINT: endpoint,
            **(attributes or {}),
        }
        self._instruments().replica_health.add(1, attrs)

    def record_budget_alert(self, *, scope: str, limit: str, threshold: float) -> None:
        """A budget's soft threshold was reached: ``scope`` is ``tenant``, ``run`` or
        ``step``, ``limit`` e.g. ``max_usd``, ``threshold`` e.g. 0.8."""
        attrs: dict[str, AttributeValue] = {
            BUDGET_SCOPE: scope,
            BUDGET_LIMIT: limit,
            BUDGET_THRESHOLD: threshold,
        }
        self._instruments().budget_alerts.add(1, attrs)


# Follows tracing.meter(): the injected meter provider, else the global one.
_default: Final = Metrics()


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
    cached_input_tokens: int | None = None,
) -> None:
    """Record one model call on ``tracing.meter()``'s provider: the one given to
    ``tracing.use_providers()``, else the global one (see ``Metrics.record_call``)."""
    _default.record_call(
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
        cached_input_tokens=cached_input_tokens,
    )


def record_cache_hit(
    kind: str,
    saved_usd: SupportsFloat,
    *,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> None:
    """Record a cache hit on ``tracing.meter()``'s provider (see ``record_call``)."""
    _default.record_cache_hit(kind=kind, saved_usd=saved_usd, attributes=attributes)


def record_in_flight(delta: int, attributes: Mapping[str, AttributeValue] | None = None) -> None:
    """Count a call in flight (+1) or done (-1) on ``tracing.meter()``'s provider."""
    _default.record_in_flight(delta, attributes)


def record_replica_event(
    event: str, endpoint: str, *, attributes: Mapping[str, AttributeValue] | None = None
) -> None:
    """Record a replica health event on ``tracing.meter()``'s provider."""
    _default.record_replica_event(event=event, endpoint=endpoint, attributes=attributes)


def record_budget_alert(scope: str, limit: str, threshold: float) -> None:
    """Count a budget alert on ``tracing.meter()``'s provider (see ``record_call``)."""
    _default.record_budget_alert(scope=scope, limit=limit, threshold=threshold)
