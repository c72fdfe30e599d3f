"""Every attribute name tracing emits, in one place.

OpenInference names (what Arize Phoenix reads) come from ``openinference.semconv``;
OpenTelemetry GenAI names come from ``opentelemetry.semconv`` when the installed version
has them and are defined here once otherwise (older releases lack the newer names).
agentflow's own names live under ``agentflow.*``.
"""

from __future__ import annotations

from typing import Final

from openinference.semconv.resource import ResourceAttributes
from openinference.semconv.trace import (
    MessageAttributes,
    MessageContentAttributes,
    OpenInferenceMimeTypeValues,
    OpenInferenceSpanKindValues,
    SpanAttributes,
    ToolCallAttributes,
)

__all__ = [
    "AGENTFLOW_ATTEMPT",
    "AGENTFLOW_BUDGET_CAPPED",
    "AGENTFLOW_BUDGET_MAX_CALLS",
    "AGENTFLOW_BUDGET_MAX_INPUT_TOKENS",
    "AGENTFLOW_BUDGET_MAX_OUTPUT_TOKENS",
    "AGENTFLOW_BUDGET_MAX_USD",
    "AGENTFLOW_CACHE_HIT",
    "AGENTFLOW_CACHE_KIND",
    "AGENTFLOW_CACHE_OUTCOME",
    "AGENTFLOW_CACHE_SIMILARITY",
    "AGENTFLOW_CALLS",
    "AGENTFLOW_CONFIDENCE",
    "AGENTFLOW_COST_CACHED_INPUT_USD",
    "AGENTFLOW_COST_CACHE_WRITE_USD",
    "AGENTFLOW_COST_INPUT_USD",
    "AGENTFLOW_COST_OUTPUT_USD",
    "AGENTFLOW_COST_SAVED_USD",
    "AGENTFLOW_COST_TOTAL_USD",
    "AGENTFLOW_ENDPOINT",
    "AGENTFLOW_ENGINE_API_BASE",
    "AGENTFLOW_ENGINE_BUSY_SECONDS_TOTAL",
    "AGENTFLOW_ENGINE_BUSY_SOURCE",
    "AGENTFLOW_ENGINE_KIND",
    "AGENTFLOW_ENGINE_PROCESS_START_S",
    "AGENTFLOW_ENGINE_SAMPLE_ERROR",
    "AGENTFLOW_ENGINE_TRIGGER",
    "AGENTFLOW_ESCALATION_ACCEPTED",
    "AGENTFLOW_ESCALATION_LEVEL",
    "AGENTFLOW_ESCALATION_TAX_USD",
    "AGENTFLOW_PRICING_CACHED_INPUT_PER_MTOK",
    "AGENTFLOW_PRICING_CACHED_PROMPT_TOKENS_PER_S",
    "AGENTFLOW_PRICING_CACHE_WRITE_PER_MTOK",
    "AGENTFLOW_PRICING_GPUS",
    "AGENTFLOW_PRICING_INPUT_PER_MTOK",
    "AGENTFLOW_PRICING_KIND",
    "AGENTFLOW_PRICING_OUTPUT_PER_MTOK",
    "AGENTFLOW_PRICING_OUTPUT_TOKENS_PER_S",
    "AGENTFLOW_PRICING_PROMPT_TOKENS_PER_S",
    "AGENTFLOW_PRICING_USD_PER_GPU_HOUR",
    "AGENTFLOW_REPLICA_COOLDOWN_S",
    "AGENTFLOW_REPLICA_DOWN_S",
    "AGENTFLOW_REPLICA_EVENT",
    "AGENTFLOW_REPLICA_FAILURES",
    "AGENTFLOW_REPLICA_PROBE_OK",
    "AGENTFLOW_REPLICA_SOURCE",
    "AGENTFLOW_ROUTE_ROUTER",
    "AGENTFLOW_ROUTE_SAVED_USD",
    "AGENTFLOW_ROUTE_STRONGEST_USD",
    "AGENTFLOW_RUN_NAME",
    "AGENTFLOW_STATUS",
    "AGENTFLOW_STEP_KIND",
    "AGENTFLOW_STEP_NAME",
    "AGENTFLOW_TIER",
    "AGENTFLOW_TOKENS_CACHED_PROMPT",
    "AGENTFLOW_TOKENS_CACHE_WRITE_PROMPT",
    "AGENTFLOW_TOKENS_COMPLETION",
    "AGENTFLOW_TOKENS_PROMPT",
    "AGENTFLOW_TOKENS_TOTAL",
    "AGENTFLOW_TOKEN_KIND",
    "AGENTFLOW_TTFT_S",
    "AGENTFLOW_USAGE_ESTIMATED",
    "ERROR_TYPE",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_MAX_TOKENS",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_REQUEST_TEMPERATURE",
    "GEN_AI_REQUEST_TOP_P",
    "GEN_AI_RESPONSE_FINISH_REASONS",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_SYSTEM",
    "GEN_AI_TOKEN_TYPE",
    "GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS",
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
    "OPENINFERENCE_PROJECT_NAME",
    "REDACTED_VALUE",
    "STEP_KIND_TO_SPAN_KIND",
    "MessageAttributes",
    "MessageContentAttributes",
    "OpenInferenceMimeTypeValues",
    "OpenInferenceSpanKindValues",
    "SpanAttributes",
    "ToolCallAttributes",
]


def _gen_ai(constant: str, fallback: str) -> str:
    """The GenAI name from opentelemetry-semantic-conventions, or ``fallback`` if absent."""
    try:
        from opentelemetry.semconv._incubating.attributes import gen_ai_attributes
    except ImportError:  # pragma: no cover - depends on the installed release
        return fallback
    value = getattr(gen_ai_attributes, constant, fallback)
    return value if isinstance(value, str) else fallback


# OpenTelemetry GenAI (https://opentelemetry.io/docs/specs/semconv/gen-ai/)
GEN_AI_OPERATION_NAME: Final = _gen_ai("GEN_AI_OPERATION_NAME", "gen_ai.operation.name")
GEN_AI_PROVIDER_NAME: Final = _gen_ai("GEN_AI_PROVIDER_NAME", "gen_ai.provider.name")
GEN_AI_SYSTEM: Final = _gen_ai("GEN_AI_SYSTEM", "gen_ai.system")  # older name of the provider
GEN_AI_REQUEST_MODEL: Final = _gen_ai("GEN_AI_REQUEST_MODEL", "gen_ai.request.model")
GEN_AI_REQUEST_MAX_TOKENS: Final = _gen_ai("GEN_AI_REQUEST_MAX_TOKENS", "gen_ai.request.max_tokens")
GEN_AI_REQUEST_TEMPERATURE: Final = _gen_ai(
    "GEN_AI_REQUEST_TEMPERATURE", "gen_ai.request.temperature"
)
GEN_AI_REQUEST_TOP_P: Final = _gen_ai("GEN_AI_REQUEST_TOP_P", "gen_ai.request.top_p")
GEN_AI_RESPONSE_MODEL: Final = _gen_ai("GEN_AI_RESPONSE_MODEL", "gen_ai.response.model")
GEN_AI_RESPONSE_FINISH_REASONS: Final = _gen_ai(
    "GEN_AI_RESPONSE_FINISH_REASONS", "gen_ai.response.finish_reasons"
)
GEN_AI_USAGE_INPUT_TOKENS: Final = _gen_ai("GEN_AI_USAGE_INPUT_TOKENS", "gen_ai.usage.input_tokens")
GEN_AI_USAGE_OUTPUT_TOKENS: Final = _gen_ai(
    "GEN_AI_USAGE_OUTPUT_TOKENS", "gen_ai.usage.output_tokens"
)
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = _gen_ai(
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS", "gen_ai.usage.cache_read.input_tokens"
)
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = _gen_ai(
    "GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS", "gen_ai.usage.cache_creation.input_tokens"
)
GEN_AI_TOKEN_TYPE: Final = _gen_ai("GEN_AI_TOKEN_TYPE", "gen_ai.token.type")
ERROR_TYPE: Final = "error.type"  # stable OTel name (opentelemetry.semconv.attributes.error)

# OpenInference resource attribute Phoenix files spans under.
OPENINFERENCE_PROJECT_NAME: Final = ResourceAttributes.PROJECT_NAME

# What hidden content is replaced with (the value openinference instrumentations use).
REDACTED_VALUE: Final = "__REDACTED__"

# agentflow's own names.
AGENTFLOW_RUN_NAME: Final = "agentflow.run.name"
AGENTFLOW_STEP_NAME: Final = "agentflow.step.name"
AGENTFLOW_STEP_KIND: Final = "agentflow.step.kind"
AGENTFLOW_TIER: Final = "agentflow.tier"
AGENTFLOW_ENDPOINT: Final = "agentflow.endpoint"
AGENTFLOW_ATTEMPT: Final = "agentflow.attempt"
AGENTFLOW_ESCALATION_LEVEL: Final = "agentflow.escalation.level"
AGENTFLOW_CONFIDENCE: Final = "agentflow.confidence"
# on a scored answer: did it reach the step's min_confidence (False: the step escalated
# or, at the top of the ladder, kept the best answer it had)
AGENTFLOW_ESCALATION_ACCEPTED: Final = "agentflow.escalation.accepted"
# on an answer accepted above the step's first tier: what the rejected answers below it
# cost (the escalation tax of that request)
AGENTFLOW_ESCALATION_TAX_USD: Final = "agentflow.escalation.tax_usd"
AGENTFLOW_TTFT_S: Final = "agentflow.ttft_s"
# the engine sent no usage: agentflow counted the prompt and the reply itself
AGENTFLOW_USAGE_ESTIMATED: Final = "agentflow.usage.estimated"
# max_tokens was lowered by a budget (the value sent), and the answer hit it
AGENTFLOW_BUDGET_CAPPED: Final = "agentflow.budget.capped"
AGENTFLOW_CACHE_HIT: Final = "agentflow.cache.hit"
AGENTFLOW_CACHE_KIND: Final = "agentflow.cache.kind"
AGENTFLOW_CACHE_SIMILARITY: Final = "agentflow.cache.similarity"
# metric dimensions (bounded): "miss" (a model answered), "exact" or "semantic" (a hit);
# "ok" or "error"; "input_uncached", "input_cached" or "output"
AGENTFLOW_CACHE_OUTCOME: Final = "agentflow.cache.outcome"
AGENTFLOW_STATUS: Final = "agentflow.status"
AGENTFLOW_TOKEN_KIND: Final = "agentflow.token.kind"
AGENTFLOW_ROUTE_ROUTER: Final = "agentflow.route.router"  # who chose a tier="auto" tier
# on the answer that settles a chat request: what its usage would have cost on the zoo's
# strongest tier, and that minus what the request paid for its answers (rejected cheaper
# ones included: an escalation can save less than nothing). Not ``agentflow.cost.*``:
# those are roll-ups, and a backend summing them must not count these.
AGENTFLOW_ROUTE_STRONGEST_USD: Final = "agentflow.route.strongest_usd"
AGENTFLOW_ROUTE_SAVED_USD: Final = "agentflow.route.saved_usd"
# replica health (agentflow.pipeline.health): span events "agentflow.replica.cooldown",
# ".probe" and ".recovered" carry these; the agentflow.replica.health counter too
AGENTFLOW_REPLICA_EVENT: Final = "agentflow.replica.event"  # cooldown, probe, recovered
AGENTFLOW_REPLICA_COOLDOWN_S: Final = "agentflow.replica.cooldown_s"
AGENTFLOW_REPLICA_DOWN_S: Final = "agentflow.replica.down_s"  # on "recovered"
AGENTFLOW_REPLICA_FAILURES: Final = "agentflow.replica.failures"  # consecutive ones
AGENTFLOW_REPLICA_PROBE_OK: Final = "agentflow.replica.probe_ok"  # on "probe"
AGENTFLOW_REPLICA_SOURCE: Final = "agentflow.replica.source"  # "call" or "health_probe"
AGENTFLOW_COST_SAVED_USD: Final = "agentflow.cost.saved_usd"
AGENTFLOW_COST_INPUT_USD: Final = "agentflow.cost.input_usd"
AGENTFLOW_COST_CACHED_INPUT_USD: Final = "agentflow.cost.cached_input_usd"
AGENTFLOW_COST_CACHE_WRITE_USD: Final = "agentflow.cost.cache_write_usd"
AGENTFLOW_COST_OUTPUT_USD: Final = "agentflow.cost.output_usd"
AGENTFLOW_COST_TOTAL_USD: Final = "agentflow.cost.total_usd"
AGENTFLOW_TOKENS_PROMPT: Final = "agentflow.tokens.prompt"
AGENTFLOW_TOKENS_CACHED_PROMPT: Final = "agentflow.tokens.cached_prompt"
AGENTFLOW_TOKENS_CACHE_WRITE_PROMPT: Final = "agentflow.tokens.cache_write_prompt"
AGENTFLOW_TOKENS_COMPLETION: Final = "agentflow.tokens.completion"
AGENTFLOW_TOKENS_TOTAL: Final = "agentflow.tokens.total"
AGENTFLOW_CALLS: Final = "agentflow.calls"
AGENTFLOW_BUDGET_MAX_USD: Final = "agentflow.budget.max_usd"
AGENTFLOW_BUDGET_MAX_INPUT_TOKENS: Final = "agentflow.budget.max_input_tokens"
AGENTFLOW_BUDGET_MAX_OUTPUT_TOKENS: Final = "agentflow.budget.max_output_tokens"
AGENTFLOW_BUDGET_MAX_CALLS: Final = "agentflow.budget.max_calls"
# The endpoint's pricing, on every LLM and EMBEDDING span, so a report can redo the
# arithmetic (GPU-hours busy, idle cost, prefix-cache savings) from the spans alone.
AGENTFLOW_PRICING_KIND: Final = "agentflow.pricing.kind"  # "token" or "gpu_hour"
AGENTFLOW_PRICING_INPUT_PER_MTOK: Final = "agentflow.pricing.input_per_mtok"
AGENTFLOW_PRICING_CACHED_INPUT_PER_MTOK: Final = "agentflow.pricing.cached_input_per_mtok"
AGENTFLOW_PRICING_OUTPUT_PER_MTOK: Final = "agentflow.pricing.output_per_mtok"
AGENTFLOW_PRICING_CACHE_WRITE_PER_MTOK: Final = "agentflow.pricing.cache_write_per_mtok"
AGENTFLOW_PRICING_USD_PER_GPU_HOUR: Final = "agentflow.pricing.usd_per_gpu_hour"
AGENTFLOW_PRICING_GPUS: Final = "agentflow.pricing.gpus"
AGENTFLOW_PRICING_PROMPT_TOKENS_PER_S: Final = "agentflow.pricing.prompt_tokens_per_s"
AGENTFLOW_PRICING_OUTPUT_TOKENS_PER_S: Final = "agentflow.pricing.output_tokens_per_s"
AGENTFLOW_PRICING_CACHED_PROMPT_TOKENS_PER_S: Final = "agentflow.pricing.cached_prompt_tokens_per_s"

# On "agentflow.engine.sample" spans (agentflow.pipeline.engine_time): a reading of a
# self-hosted engine's own busy-time counters, so a report can compare the engine's busy
# time with the GPU time agentflow attributed to calls (agentflow.endpoint names it).
AGENTFLOW_ENGINE_API_BASE: Final = "agentflow.engine.api_base"
AGENTFLOW_ENGINE_KIND: Final = "agentflow.engine.kind"  # "llama.cpp", "vllm" or "sglang"
AGENTFLOW_ENGINE_BUSY_SECONDS_TOTAL: Final = "agentflow.engine.busy_seconds_total"
AGENTFLOW_ENGINE_BUSY_SOURCE: Final = "agentflow.engine.busy_source"  # "llama-server /metrics"
AGENTFLOW_ENGINE_PROCESS_START_S: Final = "agentflow.engine.process_start_s"  # epoch s, if exposed
AGENTFLOW_ENGINE_TRIGGER: Final = "agentflow.engine.trigger"  # "run_start" or "run_end"
AGENTFLOW_ENGINE_SAMPLE_ERROR: Final = "agentflow.engine.sample_error"  # why no reading

# Which OpenInference span kind each agentflow step kind is shown as.
STEP_KIND_TO_SPAN_KIND: Final[dict[str, OpenInferenceSpanKindValues]] = {
    "planning": OpenInferenceSpanKindValues.CHAIN,
    "retrieval": OpenInferenceSpanKindValues.RETRIEVER,
    "tool": OpenInferenceSpanKindValues.TOOL,
    "verification": OpenInferenceSpanKindValues.EVALUATOR,
    "generic": OpenInferenceSpanKindValues.CHAIN,
}
