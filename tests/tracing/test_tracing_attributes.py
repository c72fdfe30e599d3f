"""Attribute builders: names from the semconv packages, costs that never double count."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from openinference.semconv.trace import OpenInferenceSpanKindValues as Kind
from openinference.semconv.trace import SpanAttributes as OI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.trace import Tracer
from opentelemetry.util.types import AttributeValue

import tracing
from tracing import attributes as A


def _llm(**overrides: object) -> dict[str, AttributeValue]:
    args: dict[str, object] = {
        "model": "smollm2-135m",
        "provider": "openai",
        "prompt_tokens": 1200,
        "cached_prompt_tokens": 800,
        "completion_tokens": 150,
        "cost_input": 0.0004,
        "cost_cached_input": 0.0004,
        "cost_output": 0.0003,
    }
    args.update(overrides)
    return tracing.llm_attributes(**args)  # type: ignore[arg-type]


def test_llm_attributes_carry_openinference_and_gen_ai_names() -> None:
    attrs = _llm(
        endpoint="http://127.0.0.1:8081/v1",
        attempt=2,
        escalation_level=1,
        confidence=0.42,
        response_model="smollm2-135m-instruct",
        finish_reason="stop",
    )
    assert attrs[OI.OPENINFERENCE_SPAN_KIND] == Kind.LLM.value
    assert attrs[OI.LLM_MODEL_NAME] == "smollm2-135m"
    assert attrs[OI.LLM_PROVIDER] == "openai"
    assert attrs[OI.LLM_SYSTEM] == "openai"
    assert attrs[OI.LLM_TOKEN_COUNT_PROMPT] == 1200
    assert attrs[OI.LLM_TOKEN_COUNT_COMPLETION] == 150
    assert attrs[OI.LLM_TOKEN_COUNT_TOTAL] == 1350
    assert attrs[OI.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_READ] == 800
    assert attrs[OI.LLM_COST_PROMPT] == pytest.approx(0.0008)
    assert attrs[OI.LLM_COST_PROMPT_DETAILS_CACHE_READ] == pytest.approx(0.0004)
    assert attrs[OI.LLM_COST_PROMPT_DETAILS_INPUT] == pytest.approx(0.0004)
    assert attrs[OI.LLM_COST_COMPLETION] == pytest.approx(0.0003)
    assert attrs[OI.LLM_COST_TOTAL] == pytest.approx(0.0011)
    assert attrs[OI.LLM_RESPONSE_MODEL_NAME] == "smollm2-135m-instruct"
    assert attrs[OI.LLM_FINISH_REASON] == "stop"
    assert attrs[gen_ai.GEN_AI_REQUEST_MODEL] == "smollm2-135m"
    assert attrs[gen_ai.GEN_AI_RESPONSE_MODEL] == "smollm2-135m-instruct"
    assert attrs[gen_ai.GEN_AI_OPERATION_NAME] == "chat"
    assert attrs[gen_ai.GEN_AI_PROVIDER_NAME] == "openai"
    assert attrs[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] == 1200  # includes cached tokens
    assert attrs[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] == 150
    assert attrs[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[A.AGENTFLOW_ENDPOINT] == "http://127.0.0.1:8081/v1"
    assert attrs[A.AGENTFLOW_ATTEMPT] == 2
    assert attrs[A.AGENTFLOW_ESCALATION_LEVEL] == 1
    assert attrs[A.AGENTFLOW_CONFIDENCE] == pytest.approx(0.42)


def test_llm_attributes_leave_out_unknown_cached_count() -> None:
    attrs = _llm(cached_prompt_tokens=None, cost_cached_input=0.0)
    assert OI.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_READ not in attrs
    assert OI.LLM_COST_PROMPT_DETAILS_CACHE_READ not in attrs
    assert A.AGENTFLOW_CONFIDENCE not in attrs
    assert attrs[OI.LLM_TOKEN_COUNT_PROMPT] == 1200


def test_llm_attributes_reject_cached_above_prompt() -> None:
    with pytest.raises(ValueError, match="include cached"):
        _llm(prompt_tokens=10, cached_prompt_tokens=11)
    with pytest.raises(ValueError, match="completion_tokens"):
        _llm(completion_tokens=-1)


def test_llm_attributes_take_decimals() -> None:
    attrs = _llm(
        cost_input=Decimal("0.000001"), cost_cached_input=Decimal(0), cost_output=Decimal("2E-6")
    )
    assert attrs[OI.LLM_COST_TOTAL] == pytest.approx(3e-6)
    assert isinstance(attrs[OI.LLM_COST_TOTAL], float)


def test_invocation_parameters_are_json_without_secrets() -> None:
    attrs = _llm(
        invocation_parameters={
            "temperature": 0.2,
            "max_tokens": 64,
            "api_key": "sk-test-1234567890abcdef",
            "extra_headers": {"Authorization": "Bearer xyz"},
        }
    )
    params = json.loads(str(attrs[OI.LLM_INVOCATION_PARAMETERS]))
    assert params["temperature"] == 0.2
    assert "api_key" not in params
    assert "xyz" not in json.dumps(params)
    assert attrs[gen_ai.GEN_AI_REQUEST_TEMPERATURE] == 0.2
    assert attrs[gen_ai.GEN_AI_REQUEST_MAX_TOKENS] == 64


def test_rollup_has_no_llm_cost_or_token_names() -> None:
    attrs = tracing.rollup_attributes(
        prompt_tokens=1500,
        cached_prompt_tokens=800,
        completion_tokens=190,
        cost_input=0.0007,
        cost_cached_input=0.0004,
        cost_output=0.00038,
        calls=2,
    )
    assert not [k for k in attrs if k.startswith(("llm.", "gen_ai."))]
    assert OI.OPENINFERENCE_SPAN_KIND not in attrs
    assert attrs[A.AGENTFLOW_COST_TOTAL_USD] == pytest.approx(0.00148)
    assert attrs[A.AGENTFLOW_TOKENS_TOTAL] == 1690
    assert attrs[A.AGENTFLOW_TOKENS_CACHED_PROMPT] == 800
    assert attrs[A.AGENTFLOW_CALLS] == 2


@pytest.mark.parametrize(
    ("kind", "span_kind"),
    [
        ("planning", Kind.CHAIN),
        ("retrieval", Kind.RETRIEVER),
        ("tool", Kind.TOOL),
        ("verification", Kind.EVALUATOR),
        ("generic", Kind.CHAIN),
    ],
)
def test_step_kinds_map_to_span_kinds(kind: str, span_kind: Kind) -> None:
    attrs = tracing.step_attributes(name="make_plan", kind=kind, tier="workhorse")
    assert attrs[OI.OPENINFERENCE_SPAN_KIND] == span_kind.value
    assert attrs[A.AGENTFLOW_STEP_NAME] == "make_plan"
    assert attrs[A.AGENTFLOW_STEP_KIND] == kind
    assert attrs[A.AGENTFLOW_TIER] == "workhorse"


def test_unknown_step_kind_says_what_to_use() -> None:
    with pytest.raises(ValueError, match="planning"):
        tracing.step_attributes(name="x", kind="plannning")


def test_run_attributes() -> None:
    attrs = tracing.run_attributes(
        name="research",
        session_id="s1",
        user_id="u1",
        metadata={"team": "search", "token": "sk-test-1234567890abcdef"},
        tags=["nightly", "eval"],
        max_usd=0.02,
        max_calls=10,
    )
    assert attrs[OI.OPENINFERENCE_SPAN_KIND] == Kind.AGENT.value
    assert attrs[OI.SESSION_ID] == "s1"
    assert attrs[OI.USER_ID] == "u1"
    assert json.loads(str(attrs[OI.METADATA])) == {"team": "search"}
    assert attrs[OI.TAG_TAGS] == ("nightly", "eval")
    assert attrs[A.AGENTFLOW_RUN_NAME] == "research"
    assert attrs[A.AGENTFLOW_BUDGET_MAX_USD] == 0.02
    assert attrs[A.AGENTFLOW_BUDGET_MAX_CALLS] == 10
    assert A.AGENTFLOW_BUDGET_MAX_INPUT_TOKENS not in attrs


def test_cache_hit_costs_nothing_and_carries_no_tokens() -> None:
    attrs = tracing.cache_hit_attributes(
        kind="semantic", saved_usd=0.0011, similarity=0.97, model="smollm2-135m"
    )
    assert attrs[OI.OPENINFERENCE_SPAN_KIND] == Kind.LLM.value
    assert attrs[OI.LLM_COST_TOTAL] == 0.0
    assert attrs[A.AGENTFLOW_CACHE_HIT] is True
    assert attrs[A.AGENTFLOW_CACHE_KIND] == "semantic"
    assert attrs[A.AGENTFLOW_COST_SAVED_USD] == pytest.approx(0.0011)
    # Phoenix prices any LLM span with token counts: a hit must have none.
    assert not [k for k in attrs if k.startswith("llm.token_count")]


def test_embedding_attributes() -> None:
    attrs = tracing.embedding_attributes(
        model="text-embedding-3-small", provider="openai", prompt_tokens=42, cost_input=8.4e-7
    )
    assert attrs[OI.OPENINFERENCE_SPAN_KIND] == Kind.EMBEDDING.value
    assert attrs[OI.EMBEDDING_MODEL_NAME] == "text-embedding-3-small"
    assert attrs[OI.LLM_TOKEN_COUNT_PROMPT] == 42
    assert attrs[OI.LLM_COST_TOTAL] == pytest.approx(8.4e-7)
    assert attrs[gen_ai.GEN_AI_OPERATION_NAME] == "embeddings"
    assert OI.LLM_MODEL_NAME not in attrs


def test_builders_are_valid_span_attributes(
    tracer: Tracer, span_exporter: InMemorySpanExporter
) -> None:
    """Every value survives the SDK's attribute validation unchanged."""
    built = {
        "run": tracing.run_attributes(name="r", session_id="s", tags=["a"], metadata={"k": 1}),
        "step": tracing.step_attributes(name="s", kind="tool"),
        "llm": _llm(finish_reason="stop"),
        "hit": tracing.cache_hit_attributes(kind="exact", saved_usd=1e-4, model="m"),
    }
    for name, attrs in built.items():
        with tracer.start_as_current_span(name, attributes=attrs):
            pass
    finished = {s.name: s for s in span_exporter.get_finished_spans()}
    for name, attrs in built.items():
        assert dict(finished[name].attributes or {}) == attrs
