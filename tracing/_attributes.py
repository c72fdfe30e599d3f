"""Attribute builders: plain numbers in, ``{name: value}`` out, no SDK needed.

Cost rule: ``llm.cost.*`` stands on LLM spans only (this call's own cost); run and step
spans carry roll-ups under ``agentflow.cost.*`` and ``agentflow.tokens.*``. A backend
that sums ``llm.cost.total`` (or, like Phoenix, prices ``llm.token_count.*``) over a trace
therefore never counts a call twice. Prompt token counts include cached tokens, as both
OpenInference and OTel GenAI define them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, SupportsFloat

from opentelemetry.util.types import AttributeValue

from tracing import _conventions as c
from tracing._conventions import OpenInferenceSpanKindValues as Kind
from tracing._conventions import SpanAttributes as OI
from tracing._redact import redact, redact_mapping

__all__ = [
    "cache_hit_attributes",
    "embedding_attributes",
    "llm_attributes",
    "rollup_attributes",
    "run_attributes",
    "session_attributes",
    "step_attributes",
]

# Invocation parameters mirrored to their GenAI request attribute.
_REQUEST_PARAMS: Final = (
    ("temperature", c.GEN_AI_REQUEST_TEMPERATURE, float),
    ("top_p", c.GEN_AI_REQUEST_TOP_P, float),
    ("max_tokens", c.GEN_AI_REQUEST_MAX_TOKENS, int),
)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)


def _check_tokens(**counts: int | None) -> None:
    for name, value in counts.items():
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}.")


def _call_common(
    *,
    model: str,
    provider: str,
    operation: str,
    endpoint: str | None,
    attempt: int,
    invocation_parameters: Mapping[str, Any] | None,
) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        c.GEN_AI_OPERATION_NAME: operation,
        c.GEN_AI_PROVIDER_NAME: provider,
        c.GEN_AI_SYSTEM: provider,
        c.GEN_AI_REQUEST_MODEL: model,
        c.AGENTFLOW_ATTEMPT: attempt,
    }
    if endpoint is not None:
        attrs[c.AGENTFLOW_ENDPOINT] = redact(endpoint)
    if invocation_parameters:
        params = redact_mapping(invocation_parameters)
        key = (
            OI.EMBEDDING_INVOCATION_PARAMETERS
            if operation == "embeddings"
            else OI.LLM_INVOCATION_PARAMETERS
        )
        attrs[key] = _json(params)
        for name, attr, kind in _REQUEST_PARAMS:
            value = params.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attrs[attr] = kind(value)
    return attrs


def llm_attributes(
    *,
    model: str,
    provider: str,
    prompt_tokens: int,
    cached_prompt_tokens: int | None,
    completion_tokens: int,
    cost_input: SupportsFloat,
    cost_cached_input: SupportsFloat,
    cost_output: SupportsFloat,
    cache_write_prompt_tokens: int | None = None,
    cost_cache_write: SupportsFloat = 0.0,
    endpoint: str | None = None,
    attempt: int = 1,
    escalation_level: int = 0,
    confidence: SupportsFloat | None = None,
    invocation_parameters: Mapping[str, Any] | None = None,
    response_model: str | None = None,
    finish_reason: str | None = None,
    operation: str = "chat",
    system: str | None = None,
) -> dict[str, AttributeValue]:
    """Attributes of one LLM call (one attempt): OpenInference, GenAI and agentflow names.

    ``prompt_tokens`` includes ``cached_prompt_tokens`` and ``cache_write_prompt_tokens``
    (prompt tokens written to the provider's prompt cache); ``None`` for either means the
    engine did not say (no count is written). ``cost_input`` is the uncached prompt part,
    ``cost_cached_input`` the cached part, ``cost_cache_write`` the cache-write part, all
    in USD, so ``llm.cost.prompt = cost_input + cost_cached_input + cost_cache_write``.
    """
    _check_tokens(
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=cached_prompt_tokens,
        completion_tokens=completion_tokens,
        cache_write_prompt_tokens=cache_write_prompt_tokens,
    )
    if (cached_prompt_tokens or 0) + (cache_write_prompt_tokens or 0) > prompt_tokens:
        raise ValueError(
            f"cached_prompt_tokens ({cached_prompt_tokens or 0}) + cache_write_prompt_tokens "
            f"({cache_write_prompt_tokens or 0}) exceeds prompt_tokens ({prompt_tokens}); prompt "
            "counts must include cached (read) and cache-write tokens."
        )
    prompt_cost = float(cost_input) + float(cost_cached_input) + float(cost_cache_write)
    attrs: dict[str, AttributeValue] = {
        OI.OPENINFERENCE_SPAN_KIND: Kind.LLM.value,
        OI.LLM_MODEL_NAME: model,
        OI.LLM_PROVIDER: provider,
        OI.LLM_SYSTEM: system or provider,
        OI.LLM_TOKEN_COUNT_PROMPT: prompt_tokens,
        OI.LLM_TOKEN_COUNT_COMPLETION: completion_tokens,
        OI.LLM_TOKEN_COUNT_TOTAL: prompt_tokens + completion_tokens,
        OI.LLM_COST_PROMPT: prompt_cost,
        OI.LLM_COST_PROMPT_DETAILS_INPUT: float(cost_input),
        OI.LLM_COST_COMPLETION: float(cost_output),
        OI.LLM_COST_TOTAL: prompt_cost + float(cost_output),
        c.GEN_AI_USAGE_INPUT_TOKENS: prompt_tokens,
        c.GEN_AI_USAGE_OUTPUT_TOKENS: completion_tokens,
        c.AGENTFLOW_ESCALATION_LEVEL: escalation_level,
    }
    if cached_prompt_tokens is not None:
        attrs[OI.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_READ] = cached_prompt_tokens
        attrs[OI.LLM_COST_PROMPT_DETAILS_CACHE_READ] = float(cost_cached_input)
        attrs[c.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = cached_prompt_tokens
    if cache_write_prompt_tokens is not None:
        attrs[OI.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_WRITE] = cache_write_prompt_tokens
        attrs[OI.LLM_COST_PROMPT_DETAILS_CACHE_WRITE] = float(cost_cache_write)
        attrs[c.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = cache_write_prompt_tokens
    if response_model is not None:
        attrs[OI.LLM_RESPONSE_MODEL_NAME] = response_model
        attrs[c.GEN_AI_RESPONSE_MODEL] = response_model
    if finish_reason is not None:
        attrs[OI.LLM_FINISH_REASON] = finish_reason
        attrs[c.GEN_AI_RESPONSE_FINISH_REASONS] = (finish_reason,)
    if confidence is not None:
        attrs[c.AGENTFLOW_CONFIDENCE] = float(confidence)
    attrs.update(
        _call_common(
            model=model,
            provider=provider,
            operation=operation,
            endpoint=endpoint,
            attempt=attempt,
            invocation_parameters=invocation_parameters,
        )
    )
    return attrs


def embedding_attributes(
    *,
    model: str,
    provider: str,
    prompt_tokens: int,
    cost_input: SupportsFloat,
    endpoint: str | None = None,
    attempt: int = 1,
    invocation_parameters: Mapping[str, Any] | None = None,
    response_model: str | None = None,
) -> dict[str, AttributeValue]:
    """Attributes of one embedding call: EMBEDDING kind, its tokens and cost.

    Carries no ``llm.model_name``: Phoenix prices LLM spans only, so embedding costs show
    up in ``llm.cost.*`` here and in agentflow's roll-ups, not in Phoenix's cost totals.
    """
    _check_tokens(prompt_tokens=prompt_tokens)
    attrs: dict[str, AttributeValue] = {
        OI.OPENINFERENCE_SPAN_KIND: Kind.EMBEDDING.value,
        OI.EMBEDDING_MODEL_NAME: model,
        OI.LLM_TOKEN_COUNT_PROMPT: prompt_tokens,
        OI.LLM_TOKEN_COUNT_TOTAL: prompt_tokens,
        OI.LLM_COST_PROMPT: float(cost_input),
        OI.LLM_COST_TOTAL: float(cost_input),
        c.GEN_AI_USAGE_INPUT_TOKENS: prompt_tokens,
    }
    if response_model is not None:
        attrs[c.GEN_AI_RESPONSE_MODEL] = response_model
    attrs.update(
        _call_common(
            model=model,
            provider=provider,
            operation="embeddings",
            endpoint=endpoint,
            attempt=attempt,
            invocation_parameters=invocation_parameters,
        )
    )
    return attrs


def cache_hit_attributes(
    *,
    kind: str,
    saved_usd: SupportsFloat,
    model: str,
    provider: str | None = None,
    similarity: SupportsFloat | None = None,
    endpoint: str | None = None,
) -> dict[str, AttributeValue]:
    """Attributes of an answer served from agentflow's cache: an LLM span costing 0.

    No token counts are written, so Phoenix (which prices ``llm.token_count.*``) charges
    nothing for it either; what the hit saved is ``agentflow.cost.saved_usd``.
    """
    attrs: dict[str, AttributeValue] = {
        OI.OPENINFERENCE_SPAN_KIND: Kind.LLM.value,
        OI.LLM_MODEL_NAME: model,
        OI.LLM_COST_PROMPT: 0.0,
        OI.LLM_COST_COMPLETION: 0.0,
        OI.LLM_COST_TOTAL: 0.0,
        c.GEN_AI_REQUEST_MODEL: model,
        c.GEN_AI_OPERATION_NAME: "chat",
        c.AGENTFLOW_CACHE_HIT: True,
        c.AGENTFLOW_CACHE_KIND: kind,
        c.AGENTFLOW_COST_SAVED_USD: float(saved_usd),
    }
    if provider is not None:
        attrs[OI.LLM_PROVIDER] = provider
        attrs[c.GEN_AI_PROVIDER_NAME] = provider
    if similarity is not None:
        attrs[c.AGENTFLOW_CACHE_SIMILARITY] = float(similarity)
    if endpoint is not None:
        attrs[c.AGENTFLOW_ENDPOINT] = redact(endpoint)
    return attrs


def rollup_attributes(
    *,
    prompt_tokens: int,
    cached_prompt_tokens: int,
    completion_tokens: int,
    cost_input: SupportsFloat,
    cost_cached_input: SupportsFloat,
    cost_output: SupportsFloat,
    calls: int,
    cache_write_prompt_tokens: int = 0,
    cost_cache_write: SupportsFloat = 0.0,
) -> dict[str, AttributeValue]:
    """Totals of a run's or step's LLM descendants, under ``agentflow.*`` names only.

    Cache writes (``agentflow.tokens.cache_write_prompt``, ``agentflow.cost.cache_write_usd``)
    are written only when there were some; ``agentflow.cost.total_usd`` includes them.

    Never ``llm.cost.*`` or ``llm.token_count.*``: those belong to LLM spans, and a
    backend summing them over a trace would otherwise count every call twice or more.
    """
    _check_tokens(
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=cached_prompt_tokens,
        completion_tokens=completion_tokens,
        calls=calls,
        cache_write_prompt_tokens=cache_write_prompt_tokens,
    )
    attrs: dict[str, AttributeValue] = {
        c.AGENTFLOW_TOKENS_PROMPT: prompt_tokens,
        c.AGENTFLOW_TOKENS_CACHED_PROMPT: cached_prompt_tokens,
        c.AGENTFLOW_TOKENS_COMPLETION: completion_tokens,
        c.AGENTFLOW_TOKENS_TOTAL: prompt_tokens + completion_tokens,
        c.AGENTFLOW_COST_INPUT_USD: float(cost_input),
        c.AGENTFLOW_COST_CACHED_INPUT_USD: float(cost_cached_input),
        c.AGENTFLOW_COST_OUTPUT_USD: float(cost_output),
        c.AGENTFLOW_COST_TOTAL_USD: float(cost_input)
        + float(cost_cached_input)
        + float(cost_cache_write)
        + float(cost_output),
        c.AGENTFLOW_CALLS: calls,
    }
    if cache_write_prompt_tokens or float(cost_cache_write):
        attrs[c.AGENTFLOW_TOKENS_CACHE_WRITE_PROMPT] = cache_write_prompt_tokens
        attrs[c.AGENTFLOW_COST_CACHE_WRITE_USD] = float(cost_cache_write)
    return attrs


def step_attributes(*, name: str, kind: str, tier: str | None = None) -> dict[str, AttributeValue]:
    """Attributes of a step span; the span kind follows the step kind.

    planning → CHAIN, retrieval → RETRIEVER, tool → TOOL, verification → EVALUATOR,
    generic → CHAIN.
    """
    span_kind = c.STEP_KIND_TO_SPAN_KIND.get(kind)
    if span_kind is None:
        known = ", ".join(sorted(c.STEP_KIND_TO_SPAN_KIND))
        raise ValueError(f"unknown step kind {kind!r}: use one of {known}.")
    attrs: dict[str, AttributeValue] = {
        OI.OPENINFERENCE_SPAN_KIND: span_kind.value,
        c.AGENTFLOW_STEP_NAME: name,
        c.AGENTFLOW_STEP_KIND: kind,
    }
    if span_kind is Kind.TOOL:
        attrs[OI.TOOL_NAME] = name
    if tier is not None:
        attrs[c.AGENTFLOW_TIER] = tier
    return attrs


def session_attributes(
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    tags: Sequence[str] | None = None,
) -> dict[str, AttributeValue]:
    """``session.id``, ``user.id``, ``metadata`` (JSON) and ``tag.tags``: what a run
    propagates to every span below it so a backend can filter any span by them."""
    attrs: dict[str, AttributeValue] = {}
    if session_id is not None:
        attrs[OI.SESSION_ID] = str(session_id)
    if user_id is not None:
        attrs[OI.USER_ID] = str(user_id)
    if metadata:
        attrs[OI.METADATA] = _json(redact_mapping(metadata))
    if tags:
        if isinstance(tags, str):
            raise TypeError("tags must be a sequence of strings, not one string.")
        attrs[OI.TAG_TAGS] = tuple(str(t) for t in tags)
    return attrs


def run_attributes(
    *,
    name: str,
    session_id: str | None = None,
    user_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    tags: Sequence[str] | None = None,
    max_usd: SupportsFloat | None = None,
    max_input_tokens: int | None = None,
    max_output_tokens: int | None = None,
    max_calls: int | None = None,
) -> dict[str, AttributeValue]:
    """Attributes of a run's root span: AGENT kind, session, user, metadata, tags and the
    run budget's limits (``agentflow.budget.*``; absent limits are left out)."""
    attrs: dict[str, AttributeValue] = {
        OI.OPENINFERENCE_SPAN_KIND: Kind.AGENT.value,
        OI.AGENT_NAME: name,
        c.AGENTFLOW_RUN_NAME: name,
    }
    attrs.update(
        session_attributes(session_id=session_id, user_id=user_id, metadata=metadata, tags=tags)
    )
    if max_usd is not None:
        attrs[c.AGENTFLOW_BUDGET_MAX_USD] = float(max_usd)
    if max_input_tokens is not None:
        attrs[c.AGENTFLOW_BUDGET_MAX_INPUT_TOKENS] = max_input_tokens
    if max_output_tokens is not None:
        attrs[c.AGENTFLOW_BUDGET_MAX_OUTPUT_TOKENS] = max_output_tokens
    if max_calls is not None:
        attrs[c.AGENTFLOW_BUDGET_MAX_CALLS] = max_calls
    return attrs
