"""Stage 7, account: normalise usage across engines, price it, write spans and metrics.

Each attempt is one LLM (or EMBEDDING) span, started before the call and ended with its
usage, cost and, once scored, its confidence; every attempt is added to the step's and
the run's totals. A cache hit is an LLM span too, with cost 0 and what it saved.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from openinference.semconv.trace import SpanAttributes
from opentelemetry import trace

import tracing
from agentflow._completion import Attempt, Completion, Embedding
from agentflow._context import StepFrame
from agentflow._response import build_completion
from agentflow._warnings import BudgetCapWarning, UsageEstimatedWarning, warn_once
from agentflow._zoo import Endpoint
from agentflow.pipeline.effects import status_code
from agentflow.pipeline.request import Request, Slot
from budgets import Cost, GpuHourPricing, Pricing, TokenPricing, Usage
from tracing import attributes as A
from tracing._metrics import record_in_flight

__all__ = [
    "answered",
    "chat_success",
    "embed_success",
    "end_attempt_span",
    "escalation_attributes",
    "normalise_usage",
    "price",
    "pricing_attributes",
    "record_attempt",
    "record_cache_hit",
    "record_failure",
    "record_routing",
    "start_attempt_span",
]


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def normalise_usage(usage: Any, *, fallback_prompt: int = 0) -> tuple[Usage, bool]:
    """``(Usage, cached_reported)`` from an OpenAI-style usage object or dict.

    A missing ``prompt_tokens_details.cached_tokens`` means the engine did not say
    (vLLM without ``--enable-prompt-tokens-details``): we count 0 cached tokens, which
    prices them at the full input price, and report ``cached_reported=False``.

    Cache writes (Anthropic's ``cache_creation_input_tokens``) are read from
    ``prompt_tokens_details.cache_write_tokens`` (or ``cache_creation_tokens``) or the
    top-level ``cache_creation_input_tokens``, where litellm puts them. litellm's
    ``prompt_tokens`` for Anthropic already counts cache reads and writes (Anthropic's
    own ``input_tokens`` does not), which is what ``Usage.prompt_tokens`` means too.
    """
    if usage is None:
        return Usage(prompt_tokens=fallback_prompt), False
    prompt = int(_get(usage, "prompt_tokens") or 0)
    completion = int(_get(usage, "completion_tokens") or 0)
    details = _get(usage, "prompt_tokens_details")
    # Anthropic-style top-level fields, when a provider reports them instead
    cached = _first(_get(details, "cached_tokens"), _get(usage, "cache_read_input_tokens"))
    writes = _first(
        _get(details, "cache_write_tokens"),
        _get(details, "cache_creation_tokens"),
        _get(usage, "cache_creation_input_tokens"),
    )
    reported = cached is not None
    cached_n = min(int(cached or 0), prompt)
    writes_n = min(int(writes or 0), prompt - cached_n)
    return Usage(prompt, cached_n, completion, writes_n), reported


def price(endpoint: Endpoint, usage: Usage) -> Cost:
    return Cost() if endpoint.pricing is None else endpoint.pricing.cost(usage)


def pricing_attributes(pricing: Pricing | None) -> dict[str, Any]:
    """The endpoint's pricing as span attributes (floats), for reports that redo the
    arithmetic from spans alone; nothing for an unpriced endpoint."""
    if isinstance(pricing, TokenPricing):
        return {
            A.AGENTFLOW_PRICING_KIND: "token",
            A.AGENTFLOW_PRICING_INPUT_PER_MTOK: float(pricing.input_per_mtok),
            A.AGENTFLOW_PRICING_CACHED_INPUT_PER_MTOK: float(
                pricing.effective_cached_input_per_mtok
            ),
            A.AGENTFLOW_PRICING_OUTPUT_PER_MTOK: float(pricing.output_per_mtok),
            A.AGENTFLOW_PRICING_CACHE_WRITE_PER_MTOK: float(pricing.effective_cache_write_per_mtok),
        }
    if isinstance(pricing, GpuHourPricing):
        attrs: dict[str, Any] = {
            A.AGENTFLOW_PRICING_KIND: "gpu_hour",
            A.AGENTFLOW_PRICING_USD_PER_GPU_HOUR: float(pricing.usd_per_gpu_hour),
            A.AGENTFLOW_PRICING_GPUS: pricing.gpus,
            A.AGENTFLOW_PRICING_PROMPT_TOKENS_PER_S: float(pricing.prompt_tokens_per_s),
            A.AGENTFLOW_PRICING_OUTPUT_TOKENS_PER_S: float(pricing.output_tokens_per_s),
        }
        if pricing.cached_prompt_tokens_per_s is not None:
            attrs[A.AGENTFLOW_PRICING_CACHED_PROMPT_TOKENS_PER_S] = float(
                pricing.cached_prompt_tokens_per_s
            )
        return attrs
    return {}


def start_attempt_span(
    endpoint: Endpoint,
    tier: str,
    number: int,
    level: int,
    operation: str = "chat",
    *,
    routed_by: str | None = None,
) -> trace.Span:
    embedding = operation == "embeddings"
    attributes: dict[str, Any] = {
        SpanAttributes.OPENINFERENCE_SPAN_KIND: "EMBEDDING" if embedding else "LLM",
        SpanAttributes.LLM_MODEL_NAME: endpoint.span_model,
        A.GEN_AI_REQUEST_MODEL: endpoint.span_model,
        A.AGENTFLOW_TIER: tier,
        A.AGENTFLOW_ENDPOINT: endpoint.id,
        A.AGENTFLOW_ATTEMPT: number,
        A.AGENTFLOW_ESCALATION_LEVEL: level,
    }
    if routed_by is not None:
        attributes[A.AGENTFLOW_ROUTE_ROUTER] = routed_by
    attributes.update(pricing_attributes(endpoint.pricing))
    span = tracing.tracer().start_span(
        f"{'embeddings' if embedding else 'chat'} {endpoint.span_model}", attributes=attributes
    )
    record_in_flight(1, {A.AGENTFLOW_TIER: tier, A.AGENTFLOW_ENDPOINT: endpoint.id})
    return span


def _dimensions(attempt: Attempt, endpoint: Endpoint) -> dict[str, Any]:
    """The live metrics' dimensions of a model call: all bounded by the configuration."""
    dims: dict[str, Any] = {
        A.AGENTFLOW_TIER: attempt.tier,
        A.AGENTFLOW_ENDPOINT: endpoint.id,
        A.AGENTFLOW_CACHE_OUTCOME: "miss",
    }
    if attempt.step is not None:
        dims[A.AGENTFLOW_STEP_NAME] = attempt.step
    return dims


def end_attempt_span(
    span: trace.Span,
    attempt: Attempt,
    endpoint: Endpoint,
    *,
    params: Mapping[str, Any],
    messages: Sequence[Mapping[str, Any]] | None = None,
    output_message: Mapping[str, Any] | None = None,
    output_text: str | None = None,
    finish_reason: str | None = None,
    error: BaseException | None = None,
    operation: str = "chat",
    extra: Mapping[str, Any] | None = None,
    in_flight: bool = True,
) -> None:
    """End an attempt's span and record its metrics; ``in_flight=False``: the call's
    in-flight count was already taken back (``answered``)."""
    u, c = attempt.usage, attempt.cost
    if operation == "embeddings":  # chat_stream is a chat
        attrs = tracing.embedding_attributes(
            model=endpoint.span_model,
            provider=endpoint.provider,
            prompt_tokens=u.prompt_tokens,
            cost_input=float(c.prompt_usd),
            endpoint=endpoint.id,
            attempt=attempt.number,
        )
    else:
        invocation = {k: v for k, v in params.items() if k in _INVOCATION_KEYS}
        attrs = tracing.llm_attributes(
            model=endpoint.span_model,
            provider=endpoint.provider,
            prompt_tokens=u.prompt_tokens,
            cached_prompt_tokens=u.cached_prompt_tokens if attempt.cached_tokens_reported else None,
            completion_tokens=u.completion_tokens,
            cost_input=float(c.input_usd),
            cost_cached_input=float(c.cached_input_usd),
            cost_output=float(c.output_usd),
            cache_write_prompt_tokens=u.cache_write_tokens or None,
            cost_cache_write=float(c.cache_write_usd),
            endpoint=endpoint.id,
            attempt=attempt.number,
            escalation_level=attempt.escalation_level,
            confidence=attempt.confidence,
            invocation_parameters=_jsonable(invocation),
            finish_reason=finish_reason,
        )
        if messages is not None:
            attrs.update(
                tracing.content_attributes(
                    messages, output_text, output_message, tracing.content_config()
                )
            )
    if attempt.ttft_s is not None:
        attrs[A.AGENTFLOW_TTFT_S] = attempt.ttft_s
    if attempt.usage_estimated:
        attrs[A.AGENTFLOW_USAGE_ESTIMATED] = True
    if extra:
        attrs.update(extra)
    span.set_attributes(attrs)
    if error is not None:
        tracing.record_error(span, error)
    span.end()
    if in_flight:
        answered(attempt.tier, endpoint)
    tracing.record_call(
        model=endpoint.span_model,
        provider=endpoint.provider,
        operation="embeddings" if operation == "embeddings" else "chat",
        input_tokens=u.prompt_tokens,
        output_tokens=u.completion_tokens,
        duration_s=attempt.latency_s,
        cost_usd=float(c.total_usd),
        error_type=None if error is None else type(error).__name__,
        ttft_s=attempt.ttft_s,
        attributes=_dimensions(attempt, endpoint),
        cached_input_tokens=u.cached_prompt_tokens,
    )


def answered(tier: str, endpoint: Endpoint) -> None:
    """The call came back: it no longer counts in ``agentflow.calls.in_flight``."""
    record_in_flight(-1, {A.AGENTFLOW_TIER: tier, A.AGENTFLOW_ENDPOINT: endpoint.id})


_INVOCATION_KEYS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "logprobs",
        "top_logprobs",
        "presence_penalty",
        "frequency_penalty",
        "tool_choice",
        "n",
        "stream",
    }
)


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(value, default=str))  # type: ignore[no-any-return]


def record_attempt(attempt: Attempt, frame: StepFrame | None, run: Any) -> None:
    """Add the attempt to every enclosing step's totals and to the run."""
    if frame is not None:
        for f in frame.chain():
            f.totals.add(
                attempt.usage,
                attempt.cost,
                latency_s=attempt.latency_s,
                error=not attempt.ok,
                cache_hit=attempt.cache_hit,
                saved_usd=attempt.saved_usd,
            )
    if run is not None:
        run._record(attempt, frame)


def _record(slot: Slot, attempt: Attempt) -> None:
    slot.request.attempts.append(attempt)
    record_attempt(attempt, slot.request.frame, slot.request.run)


def chat_success(
    slot: Slot,
    usage: Usage,
    cost: Cost,
    reported: bool,
    *,
    estimated: bool = False,
    capped_at: int | None = None,
) -> Completion:
    """A chat answer came back and was settled: account it, build the Completion.

    ``estimated``: the engine sent no usage and ``usage`` was counted; ``capped_at``: the
    ``max_tokens`` a budget lowered the request to (flagged when the answer hit it)."""
    request = slot.request
    response = slot.outcome.response
    answered(slot.tier, slot.endpoint)  # its span may wait for the scorer; the call is done
    attempt = slot.attempt(usage, cost, reported, usage_estimated=estimated)
    try:
        completion = build_completion(
            response, slot.endpoint, slot.tier, request.params, slot.outcome.latency_s
        )
    except BaseException as err:
        # the engine answered and was paid; the answer is unusable
        attempt = replace(attempt, ok=False, error=f"{type(err).__name__}: {err}")
        _record(slot, attempt)
        end_attempt_span(
            slot.span, attempt, slot.endpoint, params=slot.params, error=err, in_flight=False
        )
        raise
    _record(slot, attempt)
    completion.usage_estimated = estimated
    extra: dict[str, Any] = {}
    if capped_at is not None and completion.finish_reason == "length":
        completion.capped_by_budget = True
        extra[A.AGENTFLOW_BUDGET_CAPPED] = capped_at
        warn_once(
            BudgetCapWarning,
            request.step_name or slot.endpoint.id,
            f"an answer of {request.step_name or slot.endpoint.id!r} stopped at the "
            f"{capped_at} output tokens a budget allowed (finish_reason='length'): raise "
            "the budget, or ask for fewer tokens",
        )
    if estimated:
        warn_once(
            UsageEstimatedWarning,
            slot.endpoint.id,
            f"{slot.endpoint.id} answered without usage: agentflow counted the prompt and "
            "the reply itself and priced that; make the engine report usage for exact costs",
        )

    def end_span(confidence: float | None = None, error: BaseException | None = None) -> None:
        end_attempt_span(
            slot.span,
            replace(attempt, confidence=confidence),
            slot.endpoint,
            params=slot.params,
            messages=request.messages,
            output_message=completion.message,
            output_text=completion.text,
            finish_reason=completion.finish_reason,
            error=error,
            extra={
                **extra,
                **escalation_attributes(request, attempt, confidence),
                **record_routing(request, attempt, slot.endpoint, confidence),
            },
            in_flight=False,
        )

    if request.escalate is None:
        end_span()
    else:  # the span ends once the scorer has said how confident the answer is
        request.end_span = end_span
    completion.usage, completion.cost = usage, cost
    return completion


def escalation_attributes(
    request: Request, attempt: Attempt, confidence: float | None
) -> dict[str, Any]:
    """On a scored answer: whether the step accepted it; on one accepted above the
    step's first tier, the escalation tax: what the rejected answers below it cost."""
    escalate = request.escalate
    if escalate is None:
        return {}
    accepted = confidence is not None and confidence >= escalate.min_confidence
    attrs: dict[str, Any] = {A.AGENTFLOW_ESCALATION_ACCEPTED: accepted}
    level = attempt.escalation_level
    if accepted and level > 0:
        attrs[A.AGENTFLOW_ESCALATION_TAX_USD] = float(_paid_below(request, attempt))
    return attrs


def _paid_below(request: Request, attempt: Attempt) -> Decimal:
    """What the request paid for the answers it had before ``attempt``'s tier: the
    rejected cheaper ones (failed attempts and cache hits are not answers paid for)."""
    return sum(
        (
            a.cost.total_usd
            for a in request.attempts
            if a.ok and not a.cache_hit and a.escalation_level < attempt.escalation_level
        ),
        Decimal(0),
    )


def record_routing(
    request: Request, attempt: Attempt, endpoint: Endpoint, confidence: float | None
) -> dict[str, Any]:
    """On the answer that settles a chat request (unscored, accepted, or the last one the
    ladder allowed): what its usage would have cost on the zoo's strongest tier (the last
    in escalation order, its first endpoint's pricing), and the routing saving — that
    minus what the request paid for its answers, the rejected cheaper ones included, so
    an escalation can save less than nothing. An answer from the strongest tier saves
    what was paid below it (0 or less); nothing when either side is unpriced.

    The saving is added to the run's totals (its step's and tier's rows); the span
    attributes are returned."""
    escalate = request.escalate
    rejected = escalate is not None and (confidence is None or confidence < escalate.min_confidence)
    if rejected and not request.climb_ends:
        return {}  # a stronger tier answers next, and pays this answer as its tax
    strongest = request.zoo.tiers[-1]
    pricing = strongest.endpoints[0].pricing
    if pricing is None or endpoint.pricing is None:
        return {}
    paid = attempt.cost.total_usd
    if attempt.tier == strongest.name:
        counterfactual = paid  # already the strongest tier: routing saved nothing here
    else:
        counterfactual = pricing.cost(attempt.usage).total_usd
    saved = counterfactual - (paid + _paid_below(request, attempt))
    if request.run is not None:
        request.run._record_routing(attempt, saved)
    return {
        A.AGENTFLOW_ROUTE_STRONGEST_USD: float(counterfactual),
        A.AGENTFLOW_ROUTE_SAVED_USD: float(saved),
    }


def record_failure(slot: Slot, err: BaseException, usage: Usage | None = None) -> None:
    """Account a failed attempt (refunded unless ``usage`` says tokens were spent)."""
    usage = usage or Usage()
    cost = price(slot.endpoint, usage)
    attempt = slot.attempt(
        usage,
        cost,
        False,
        ok=False,
        error=tracing.redact(f"{type(err).__name__}: {err}"),
        status_code=status_code(err),
    )
    _record(slot, attempt)
    end_attempt_span(
        slot.span,
        attempt,
        slot.endpoint,
        params=slot.params,
        messages=slot.request.messages,
        error=err,
        operation=slot.request.operation,
    )


def embed_success(slot: Slot, usage: Usage, cost: Cost) -> Embedding:
    """An embeddings answer came back and was settled: account it, build the Embedding."""
    response = slot.outcome.response
    attempt = slot.attempt(usage, cost, False)
    _record(slot, attempt)
    end_attempt_span(slot.span, attempt, slot.endpoint, params=slot.params, operation="embeddings")
    data = getattr(response, "data", None) or []
    vectors = [list(d["embedding"] if isinstance(d, dict) else d.embedding) for d in data]
    return Embedding(
        vectors=vectors,
        tier=slot.tier,
        model=slot.endpoint.span_model,
        endpoint=slot.endpoint.id,
        usage=usage,
        cost=cost,
        attempts=list(slot.request.attempts),
        raw=response,
    )


def record_cache_hit(
    request: Request,
    completion: Completion,
    kind: str,
    similarity: float | None,
    saved: Decimal,
    *,
    ttft_s: float | None = None,
) -> Completion:
    """A cache hit: an LLM span with cost 0 and what it saved, an ``Attempt`` with
    ``cache_hit=True``, added to the step's and run's totals. ``ttft_s``: a stream served
    from the cache, and how soon its first chunk was ready."""
    attempt = Attempt(
        number=len(request.attempts) + 1,
        tier=completion.tier,
        endpoint=f"cache:{kind}",
        model=completion.model,
        usage=Usage(),
        cost=Cost(),
        latency_s=completion.latency_s,
        ok=True,
        step=request.step_name,
        confidence=completion.confidence,
        cache_hit=True,
        saved_usd=saved,
        ttft_s=ttft_s,
    )
    attrs = tracing.cache_hit_attributes(
        kind=kind,
        saved_usd=saved,
        model=completion.model,
        similarity=similarity,
        endpoint=attempt.endpoint,  # "cache:exact": no replica served it
    )
    attrs[A.AGENTFLOW_TIER] = completion.tier
    attrs[A.AGENTFLOW_ATTEMPT] = attempt.number
    if ttft_s is not None:
        attrs[A.AGENTFLOW_TTFT_S] = ttft_s
    attrs.update(
        tracing.content_attributes(
            request.messages, completion.text, completion.message, tracing.content_config()
        )
    )
    span = tracing.tracer().start_span(f"chat {completion.model}", attributes=attrs)
    span.end()
    request.attempts.append(attempt)
    record_attempt(attempt, request.frame, request.run)
    dims = {A.AGENTFLOW_TIER: completion.tier, A.AGENTFLOW_ENDPOINT: attempt.endpoint}
    if request.step_name is not None:
        dims[A.AGENTFLOW_STEP_NAME] = request.step_name
    tracing.record_cache_hit(kind, saved, attributes=dims)
    completion.attempts = list(request.attempts)
    return completion
