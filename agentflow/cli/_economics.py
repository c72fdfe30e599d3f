"""The money side of ``agentflow report``: GPU utilisation, idle cost, cost per million
tokens and savings, redone from the spans alone.

Every LLM span carries its endpoint's pricing (``agentflow.pricing.*``). From it:

- **busy GPU-hours** of a call: the same arithmetic that priced it
  (``budgets.GpuHourPricing.cost``) at $1 per GPU-hour, so busy time × the GPU-hour
  price is exactly what the call was charged;
- **provisioned GPU-hours** of a GPU-hour endpoint: window × its GPUs; an endpoint that
  any span of the source names counts as up for the whole window (one endpoint is one
  replica), so a replica that served nothing in the window is all idle;
- **utilisation** = busy / provisioned; **idle $** = (provisioned − busy) × $/GPU-hour;
- **the engine's own busy time**, where ``agentflow.engine.sample`` spans read its
  counters (``engine_metrics=True``): their increase from the sample nearest the
  window's start to the one nearest its end (from outside the window where there is
  one, restarts counted as Prometheus does) × GPUs, beside agentflow's figure;
- **$ per million tokens**, measured: what the prompt (or output) tokens were charged ×
  10⁶ / tokens; "with idle" spreads the idle cost over input and output in proportion
  to the GPU time each took (the seed formula: GPU $/h × hours provisioned / tokens);
- **savings**: prefix cache (cached prompt tokens priced at the uncached rate minus what
  they cost, less the premium paid for cache writes over the uncached rate, so a prompt
  cache written and never read again shows as a loss), response cache (``exact`` hits)
  and semantic cache (``semantic`` hits), both from ``agentflow.cost.saved_usd`` on the
  hit's span; routing (``agentflow.route.saved_usd`` on the answer that settled a
  request: its usage priced at the zoo's strongest tier, ``agentflow.route.strongest_usd``,
  minus what the request paid, rejected cheaper answers included; below 0 when an
  escalation cost more than asking the strongest tier at once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from openinference.semconv.trace import SpanAttributes as OI
from pydantic import ValidationError

from agentflow.cli._calls import Call, Window
from agentflow.cli._spans import SpanRecord, to_float, to_int
from agentflow.pipeline.engine_time import ENGINE_SAMPLE_SPAN, busy_increase, readings_of
from budgets import GpuHourPricing, TokenPricing, Usage
from tracing import attributes as A

__all__ = [
    "SAVING_KINDS",
    "Economics",
    "busy_gpu_hours",
    "call_busy_gpu_hours",
    "call_pricing",
    "economics_by",
    "engine_busy_seconds",
    "savings",
    "span_pricing",
]

SAVING_KINDS: Final = ("prefix_cache", "response_cache", "semantic_cache", "routing")
_CACHE_KIND_SAVING: Final = {"exact": "response_cache", "semantic": "semantic_cache"}
_MILLION: Final = 1_000_000

SpanPricing = TokenPricing | GpuHourPricing


_PRICING_ATTRS: Final = (
    A.AGENTFLOW_PRICING_KIND,
    A.AGENTFLOW_PRICING_USD_PER_GPU_HOUR,
    A.AGENTFLOW_PRICING_GPUS,
    A.AGENTFLOW_PRICING_PROMPT_TOKENS_PER_S,
    A.AGENTFLOW_PRICING_OUTPUT_TOKENS_PER_S,
    A.AGENTFLOW_PRICING_CACHED_PROMPT_TOKENS_PER_S,
    A.AGENTFLOW_PRICING_INPUT_PER_MTOK,
    A.AGENTFLOW_PRICING_CACHED_INPUT_PER_MTOK,
    A.AGENTFLOW_PRICING_OUTPUT_PER_MTOK,
    A.AGENTFLOW_PRICING_CACHE_WRITE_PER_MTOK,
)
_parsed: dict[tuple[Any, ...], SpanPricing | None] = {}


def _number(attrs: Mapping[str, Any], name: str) -> Any:
    value = attrs.get(name)
    return str(value) if isinstance(value, float) else value


def span_pricing(attrs: Mapping[str, Any]) -> SpanPricing | None:
    """The pricing a call's span carries, or None (unpriced, a cache hit, an old span)."""
    if attrs.get(A.AGENTFLOW_PRICING_KIND) is None:
        return None
    key = tuple(attrs.get(name) for name in _PRICING_ATTRS)
    try:
        return _parsed[key]
    except KeyError:
        found = _parsed[key] = _parse_pricing(attrs)
        return found
    except TypeError:  # an unhashable value: not a pricing agentflow wrote
        return None


def call_pricing(call: Call) -> SpanPricing | None:
    """``span_pricing`` of a call, read once."""
    if "pricing" not in call.memo:
        call.memo["pricing"] = span_pricing(call.attributes)
    found: SpanPricing | None = call.memo["pricing"]
    return found


def _parse_pricing(attrs: Mapping[str, Any]) -> SpanPricing | None:
    kind = attrs.get(A.AGENTFLOW_PRICING_KIND)
    try:
        if kind == "gpu_hour":
            return GpuHourPricing(
                usd_per_gpu_hour=_number(attrs, A.AGENTFLOW_PRICING_USD_PER_GPU_HOUR),
                gpus=int(attrs.get(A.AGENTFLOW_PRICING_GPUS) or 1),
                prompt_tokens_per_s=_number(attrs, A.AGENTFLOW_PRICING_PROMPT_TOKENS_PER_S),
                output_tokens_per_s=_number(attrs, A.AGENTFLOW_PRICING_OUTPUT_TOKENS_PER_S),
                cached_prompt_tokens_per_s=_number(
                    attrs, A.AGENTFLOW_PRICING_CACHED_PROMPT_TOKENS_PER_S
                ),
            )
        if kind == "token":
            return TokenPricing(
                input_per_mtok=_number(attrs, A.AGENTFLOW_PRICING_INPUT_PER_MTOK),
                cached_input_per_mtok=_number(attrs, A.AGENTFLOW_PRICING_CACHED_INPUT_PER_MTOK),
                output_per_mtok=_number(attrs, A.AGENTFLOW_PRICING_OUTPUT_PER_MTOK),
                # absent on spans older than cache-write pricing: the input price
                cache_write_per_mtok=_number(attrs, A.AGENTFLOW_PRICING_CACHE_WRITE_PER_MTOK),
            )
    except (ValidationError, TypeError, ValueError):
        return None
    return None


def _usage(call: Call) -> Usage:
    prompt = call.prompt_tokens
    cached = min(call.cached_tokens, prompt)
    return Usage(prompt, cached, call.completion_tokens, _cache_writes(call, prompt - cached))


def _cache_writes(call: Call, at_most: int) -> int:
    """Prompt tokens a call wrote to the provider's prompt cache (0 when not reported)."""
    writes = to_int(call.attributes.get(OI.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_WRITE))
    return max(0, min(writes, at_most))


def busy_gpu_hours(pricing: GpuHourPricing, usage: Usage) -> tuple[float, float]:
    """GPU-hours a call kept its endpoint busy, ``(prompt, output)``: the call priced at
    $1 per GPU-hour by the endpoint's own ``GpuHourPricing``."""
    cost = pricing.model_copy(update={"usd_per_gpu_hour": Decimal(1)}).cost(usage)
    return float(cost.prompt_usd), float(cost.output_usd)


def call_busy_gpu_hours(call: Call) -> tuple[float, float]:
    """``busy_gpu_hours`` of a call, ``(0, 0)`` unless its endpoint is priced by the
    GPU-hour; worked out once."""
    if "busy" not in call.memo:
        pricing = call_pricing(call)
        busy = (0.0, 0.0)
        if isinstance(pricing, GpuHourPricing):
            busy = busy_gpu_hours(pricing, _usage(call))
        call.memo["busy"] = busy
    found: tuple[float, float] = call.memo["busy"]
    return found


def savings(call: Call) -> dict[str, float]:
    """What a call saved, by kind (see the module docstring); worked out once."""
    if "savings" not in call.memo:
        call.memo["savings"] = _savings(call)
    found: dict[str, float] = call.memo["savings"]
    return found


def _savings(call: Call) -> dict[str, float]:
    saved = dict.fromkeys(SAVING_KINDS, 0.0)
    if call.cache_hit:
        kind = _CACHE_KIND_SAVING.get(str(call.attributes.get(A.AGENTFLOW_CACHE_KIND)))
        if kind is not None:
            saved[kind] = call.cache_saved_usd
        return saved
    routing = call.attributes.get(A.AGENTFLOW_ROUTE_SAVED_USD)
    if routing is not None:  # on the answer that settled its request; may be < 0
        saved["routing"] = to_float(routing)
    pricing = call_pricing(call)
    cached = min(call.cached_tokens, call.prompt_tokens)
    writes = _cache_writes(call, call.prompt_tokens - cached)
    if pricing is not None and (cached or writes):
        # (reads at the input price - paid for reads) - (paid for writes - writes at the
        # input price): a cache write's premium is what the reads have to win back
        tokens = cached + writes
        uncached = pricing.cost(Usage(tokens, 0, 0)).input_usd
        paid = pricing.cost(Usage(tokens, cached, 0, writes)).prompt_usd
        saved["prefix_cache"] = float(uncached - paid)
    return saved


@dataclass
class Economics:
    """Tokens, money and GPU time of an endpoint or a tier over a window."""

    calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    input_usd: float = 0.0  # prompt tokens, cached ones included
    output_usd: float = 0.0
    pricing: str | None = None  # "gpu_hour", "token", "mixed" or None
    usd_per_gpu_hour: float | None = None
    gpus: int | None = None
    replicas: int = 0  # GPU-hour endpoints counted as up
    provisioned_gpu_hours: float = 0.0
    busy_input_gpu_hours: float = 0.0
    busy_output_gpu_hours: float = 0.0
    idle_usd: float = 0.0
    # the engine's own busy time (its /metrics counters), None without two samples
    engine_busy_gpu_hours: float | None = None
    engine_busy_source: str | None = None
    engine_missing: bool = False  # a GPU endpoint absorbed without engine samples
    saved: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SAVING_KINDS, 0.0))

    @property
    def gpu(self) -> bool:
        return self.replicas > 0

    @property
    def busy_gpu_hours(self) -> float:
        return self.busy_input_gpu_hours + self.busy_output_gpu_hours

    @property
    def utilisation(self) -> float | None:
        if not self.gpu or not self.provisioned_gpu_hours:
            return None
        return self.busy_gpu_hours / self.provisioned_gpu_hours

    @property
    def engine_utilisation(self) -> float | None:
        if self.engine_busy_gpu_hours is None or not self.provisioned_gpu_hours:
            return None
        return self.engine_busy_gpu_hours / self.provisioned_gpu_hours

    @property
    def usd(self) -> float:
        return self.input_usd + self.output_usd

    def per_mtok(self, *, idle: bool) -> tuple[float | None, float | None]:
        """Measured ``($/Mtok input, $/Mtok output)``; ``idle=True`` spreads the idle
        cost over both in proportion to the GPU time each took."""
        input_usd, output_usd = self.input_usd, self.output_usd
        if idle and self.idle_usd:
            busy = self.busy_gpu_hours
            if not busy:
                return None, None  # all idle: no token carries the cost
            input_usd += self.idle_usd * self.busy_input_gpu_hours / busy
            output_usd += self.idle_usd * self.busy_output_gpu_hours / busy
        return (
            input_usd * _MILLION / self.prompt_tokens if self.prompt_tokens else None,
            output_usd * _MILLION / self.completion_tokens if self.completion_tokens else None,
        )

    def add_call(self, call: Call) -> None:
        attrs = call.attributes
        self.calls += 1
        self.prompt_tokens += call.prompt_tokens
        self.cached_tokens += call.cached_tokens
        self.completion_tokens += call.completion_tokens
        prompt_usd = attrs.get(OI.LLM_COST_PROMPT)
        output_usd = to_float(attrs.get(OI.LLM_COST_COMPLETION))
        self.input_usd += call.cost_usd - output_usd if prompt_usd is None else to_float(prompt_usd)
        self.output_usd += output_usd
        busy_in, busy_out = call_busy_gpu_hours(call)
        self.busy_input_gpu_hours += busy_in
        self.busy_output_gpu_hours += busy_out
        for kind, usd in savings(call).items():
            self.saved[kind] += usd

    def provision(self, pricing: GpuHourPricing, window: Window) -> None:
        """Count this endpoint as one replica up for the whole window."""
        self.replicas += 1
        self.usd_per_gpu_hour = float(pricing.usd_per_gpu_hour)
        self.gpus = pricing.gpus
        self.provisioned_gpu_hours += window.seconds * pricing.gpus / 3600

    def settle_idle(self) -> None:
        """Idle $ of one endpoint, once all its calls and its provisioning are in."""
        if self.gpu and self.usd_per_gpu_hour is not None:
            idle_hours = max(0.0, self.provisioned_gpu_hours - self.busy_gpu_hours)
            self.idle_usd = idle_hours * self.usd_per_gpu_hour

    def absorb(self, other: Economics) -> None:
        """Add an endpoint's figures to a tier's."""
        for name in (
            "calls",
            "prompt_tokens",
            "cached_tokens",
            "completion_tokens",
            "input_usd",
            "output_usd",
            "replicas",
            "provisioned_gpu_hours",
            "busy_input_gpu_hours",
            "busy_output_gpu_hours",
            "idle_usd",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, usd in other.saved.items():
            self.saved[kind] += usd
        if other.gpu:
            _absorb_engine_into(self, other)
        kinds = {k for k in (self.pricing, other.pricing) if k}
        self.pricing = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else None)
        if other.gpu:
            same = self.usd_per_gpu_hour in (None, other.usd_per_gpu_hour)
            self.usd_per_gpu_hour = other.usd_per_gpu_hour if same else None
            self.gpus = other.gpus if self.gpus in (None, other.gpus) else None


def _absorb_engine_into(tier: Economics, other: Economics) -> None:
    """A tier's engine busy time: the sum over its GPU endpoints, None unless every one
    of them was sampled."""
    if other.engine_busy_gpu_hours is None or tier.engine_missing:
        tier.engine_missing, tier.engine_busy_gpu_hours = True, None
        return
    tier.engine_busy_gpu_hours = (tier.engine_busy_gpu_hours or 0.0) + other.engine_busy_gpu_hours
    sources = {s for s in (tier.engine_busy_source, other.engine_busy_source) if s}
    tier.engine_busy_source = ", ".join(sorted(sources)) or None


def engine_busy_seconds(
    spans: Iterable[SpanRecord], window: Window
) -> dict[str, tuple[float, str]]:
    """``{endpoint: (busy seconds, source)}`` from the ``agentflow.engine.sample`` spans:
    the counters' increase from the last sample at or before the window's start (else the
    first inside it) to the first at or after its end (else the last inside it). An
    endpoint needs two such samples; failed samples are skipped."""
    series: dict[str, list[tuple[int, float, float | None, str]]] = {}
    for span in spans:
        if span.name != ENGINE_SAMPLE_SPAN or span.start_ns is None:
            continue
        reading = readings_of(span.attributes)
        endpoint = span.attributes.get(A.AGENTFLOW_ENDPOINT)
        if reading is None or not endpoint:
            continue
        source = str(span.attributes.get(A.AGENTFLOW_ENGINE_BUSY_SOURCE) or "engine /metrics")
        series.setdefault(str(endpoint), []).append((span.start_ns, *reading, source))
    found: dict[str, tuple[float, str]] = {}
    for endpoint, samples in series.items():
        samples.sort(key=lambda s: s[0])
        times = [s[0] for s in samples]
        before = [i for i, t in enumerate(times) if t <= window.since_ns]
        inside = [i for i, t in enumerate(times) if window.holds(t)]
        after = [i for i, t in enumerate(times) if t >= window.until_ns]
        first = before[-1] if before else (inside[0] if inside else None)
        last = after[0] if after else (inside[-1] if inside else None)
        if first is None or last is None or last <= first:
            continue
        chosen = samples[first : last + 1]
        found[endpoint] = (busy_increase([(s[1], s[2]) for s in chosen]), chosen[-1][3])
    return found


def economics_by(
    calls: Iterable[Call],
    every_call: Iterable[Call],
    window: Window,
    samples: Iterable[SpanRecord] = (),
) -> tuple[dict[str, Economics], dict[str, Economics]]:
    """``(per endpoint, per tier)`` over the calls in ``window``.

    ``every_call`` is the whole source: a GPU-hour endpoint any of its spans names is
    provisioned for the window even if it served nothing inside it. ``samples``: the
    source's other spans, where ``agentflow.engine.sample`` ones give the engines' own
    busy time."""
    endpoints: dict[str, Economics] = {}
    tier_of: dict[str, str] = {}
    gpu_pricing: dict[str, GpuHourPricing] = {}
    for call in every_call:
        pricing = call_pricing(call)
        tier_of.setdefault(call.endpoint, call.tier)
        if isinstance(pricing, GpuHourPricing):
            gpu_pricing[call.endpoint] = pricing  # the latest wins
    for call in calls:
        pricing = call_pricing(call)
        econ = endpoints.setdefault(call.endpoint, Economics())
        econ.add_call(call)
        if pricing is not None and econ.pricing != pricing.kind:
            econ.pricing = pricing.kind if econ.pricing is None else "mixed"
    for name, pricing in gpu_pricing.items():
        econ = endpoints.setdefault(name, Economics(pricing="gpu_hour"))
        econ.provision(pricing, window)
        econ.settle_idle()
    for name, (seconds, source) in engine_busy_seconds(samples, window).items():
        sampled, priced = endpoints.get(name), gpu_pricing.get(name)
        if sampled is not None and priced is not None:
            sampled.engine_busy_gpu_hours = seconds * priced.gpus / 3600
            sampled.engine_busy_source = source
    tiers: dict[str, Economics] = {}
    for name, econ in endpoints.items():
        tiers.setdefault(tier_of.get(name, "(none)"), Economics()).absorb(econ)
    return endpoints, tiers
