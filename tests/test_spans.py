"""The span tree agentflow emits: run (AGENT) → step → one LLM span per attempt, costs on
the right spans, roll-ups that add up, errors marked, secrets kept off."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
from openinference.semconv.trace import SpanAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import agentflow as af
from agentflow.testing import Fault, LoopbackServer, Reply
from budgets import Budget
from tracing import attributes as A

KIND = SpanAttributes.OPENINFERENCE_SPAN_KIND
Q = [{"role": "user", "content": "What is the capital of France?"}]


def _children(finished: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [
        s for s in finished if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def _descendants(finished: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    out: list[ReadableSpan] = []
    todo = [parent]
    while todo:
        node = todo.pop()
        kids = _children(finished, node)
        out.extend(kids)
        todo.extend(kids)
    return out


def _one(finished: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    matches = [s for s in finished if s.name == name]
    assert len(matches) == 1, (name, [s.name for s in finished])
    return matches[0]


def _all_text(span: ReadableSpan) -> str:
    """Every attribute value, event attribute and status of a span, as one string."""
    parts: list[str] = [span.name, span.status.description or ""]
    parts.extend(f"{k}={v}" for k, v in (span.attributes or {}).items())
    for event in span.events:
        parts.append(event.name)
        parts.extend(f"{k}={v}" for k, v in (event.attributes or {}).items())
    return "\n".join(parts)


@pytest.fixture
def agent(zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter) -> Any:
    """A four-step agent run whose retrieval step retries once; returns (run, spans)."""

    @af.plan(tier="small", name="plan")
    def plan() -> str:
        return af.complete(messages=Q).text

    @af.retrieve(tier="small", name="retrieve")
    def retrieve() -> str:
        return af.complete(messages=Q).text

    @af.tool(tier="big", name="tool")
    def tool() -> str:
        return af.complete(messages=Q).text

    @af.verify(tier="big", name="verify")
    async def verify() -> str:
        return (await af.acomplete(messages=Q)).text

    srv.script(
        Reply("p", prompt_tokens=100, cached_tokens=40, completion_tokens=10),
        Fault.status(500),
        Reply("r", prompt_tokens=200, completion_tokens=20),
        Reply("t", prompt_tokens=300, cached_tokens=300, completion_tokens=30),
        Reply("v", prompt_tokens=50, completion_tokens=5),
    )

    async def go() -> af.Run:
        async with af.run(
            "agent", user_id="u-1", session_id="s-1", metadata={"team": "search"}
        ) as run:
            plan()
            retrieve()
            tool()
            await verify()
        return run

    return go


async def test_span_tree_run_step_llm(agent: Any, spans: InMemorySpanExporter) -> None:
    run = await agent()
    finished = spans.get_finished_spans()

    run_span = _one(finished, "run agent")
    assert run_span.parent is None
    assert run_span.attributes[KIND] == "AGENT"
    assert run_span.attributes[SpanAttributes.SESSION_ID] == "s-1"
    assert run_span.attributes[SpanAttributes.USER_ID] == "u-1"
    assert "search" in str(run_span.attributes[SpanAttributes.METADATA])

    expected = {"plan": "CHAIN", "retrieve": "RETRIEVER", "tool": "TOOL", "verify": "EVALUATOR"}
    steps = _children(finished, run_span)
    assert sorted(s.name for s in steps) == sorted(expected)
    for step_span in steps:
        assert step_span.attributes[KIND] == expected[step_span.name]
        llms = _children(finished, step_span)
        assert llms, step_span.name
        for llm in llms:
            assert llm.attributes[KIND] == "LLM"
            assert not _children(finished, llm)
    by_step = {s.name: _children(finished, s) for s in steps}
    assert [len(by_step[n]) for n in ("plan", "retrieve", "tool", "verify")] == [1, 2, 1, 1]

    # one LLM span per attempt, numbered, with the model, endpoint and tokens
    retry, answer = sorted(by_step["retrieve"], key=lambda s: s.attributes[A.AGENTFLOW_ATTEMPT])
    assert (retry.attributes[A.AGENTFLOW_ATTEMPT], answer.attributes[A.AGENTFLOW_ATTEMPT]) == (1, 2)
    (tool_llm,) = by_step["tool"]
    attrs = tool_llm.attributes
    assert attrs[SpanAttributes.LLM_MODEL_NAME] == "big-model"
    assert attrs[A.GEN_AI_REQUEST_MODEL] == "big-model"
    assert attrs[SpanAttributes.LLM_PROVIDER] == "openai"
    assert attrs[SpanAttributes.LLM_TOKEN_COUNT_PROMPT] == 300
    assert attrs[SpanAttributes.LLM_TOKEN_COUNT_COMPLETION] == 30
    assert attrs[SpanAttributes.LLM_TOKEN_COUNT_TOTAL] == 330
    assert attrs[SpanAttributes.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_READ] == 300
    assert attrs[A.GEN_AI_USAGE_INPUT_TOKENS] == 300
    assert attrs[A.GEN_AI_USAGE_OUTPUT_TOKENS] == 30
    assert attrs[A.AGENTFLOW_TIER] == "big"
    assert str(attrs[A.AGENTFLOW_ENDPOINT]).startswith("openai/big-model@")
    assert attrs[A.AGENTFLOW_ESCALATION_LEVEL] == 0
    # 300 cached * $5/M + 30 out * $20/M
    assert attrs[SpanAttributes.LLM_COST_TOTAL] == pytest.approx(0.0021)
    assert run.totals.calls == 5  # four steps, one retry


async def test_llm_cost_only_on_llm_spans_and_rollups_add_up(
    agent: Any, spans: InMemorySpanExporter
) -> None:
    run = await agent()
    finished = spans.get_finished_spans()
    llm_spans = [s for s in finished if s.attributes.get(KIND) == "LLM"]
    assert len(llm_spans) == 5

    for span in finished:
        keys = set(span.attributes or {})
        has_llm_cost = any(k.startswith("llm.cost.") for k in keys)
        if span.attributes.get(KIND) == "LLM":
            assert has_llm_cost, span.name
            assert not any(k.startswith("agentflow.cost.") for k in keys), span.name
        else:
            assert not has_llm_cost, span.name
            assert not any(k.startswith("llm.token_count.") for k in keys), span.name

    for span in finished:
        if span.attributes.get(KIND) == "LLM":
            continue
        below = [d for d in _descendants(finished, span) if d.attributes.get(KIND) == "LLM"]
        total = math.fsum(float(d.attributes[SpanAttributes.LLM_COST_TOTAL]) for d in below)
        assert span.attributes[A.AGENTFLOW_COST_TOTAL_USD] == pytest.approx(total, abs=1e-15)
        assert span.attributes[A.AGENTFLOW_CALLS] == len(below), span.name
        prompt = sum(int(d.attributes[SpanAttributes.LLM_TOKEN_COUNT_PROMPT]) for d in below)
        assert span.attributes[A.AGENTFLOW_TOKENS_PROMPT] == prompt, span.name

    run_span = _one(finished, "run agent")
    assert run_span.attributes[A.AGENTFLOW_COST_TOTAL_USD] == pytest.approx(
        float(run.cost.total_usd)
    )


async def test_failed_attempt_span_has_error_status(
    agent: Any, spans: InMemorySpanExporter
) -> None:
    await agent()
    finished = spans.get_finished_spans()
    retrieve = _one(finished, "retrieve")
    failed, ok = sorted(
        _children(finished, retrieve), key=lambda s: s.attributes[A.AGENTFLOW_ATTEMPT]
    )
    assert failed.status.status_code is StatusCode.ERROR
    assert "500" in (failed.status.description or "") or "Internal" in (
        failed.status.description or ""
    )
    assert ok.status.status_code is not StatusCode.ERROR
    # the step recovered: it is not an error
    assert retrieve.status.status_code is not StatusCode.ERROR


def test_a_call_that_fails_marks_step_and_run(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    @af.tool(name="doomed")
    def doomed() -> None:
        af.complete(messages=Q)

    srv.script(Fault.status(400))
    with pytest.raises(af.CallError), af.run("failing"):
        doomed()
    finished = spans.get_finished_spans()
    for name in ("run failing", "doomed", "chat small-model"):
        assert _one(finished, name).status.status_code is StatusCode.ERROR, name


async def test_no_span_carries_the_api_key(
    agent: Any, spans: InMemorySpanExporter, api_key: str
) -> None:
    await agent()
    finished = spans.get_finished_spans()
    assert finished
    for span in finished:
        assert api_key not in _all_text(span), span.name


def test_api_key_echoed_in_an_error_stays_off_spans(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter, api_key: str
) -> None:
    # proxies echo the key they refused ("... Received API Key = sk-...")
    @af.tool(name="authed")
    def authed() -> None:
        af.complete(messages=Q)

    srv.script(Fault.status(401, body=f"Invalid token passed. Received API Key = {api_key}"))
    with pytest.raises(af.CallError) as info, af.run("auth"):
        authed()
    for attempt in info.value.attempts:
        assert attempt.status_code == 401
        assert api_key not in (attempt.error or "")
    leaking = [s.name for s in spans.get_finished_spans() if api_key in _all_text(s)]
    assert leaking == []


def test_api_key_echoed_in_an_error_stays_out_of_the_call_error(
    zoo: af.ModelZoo, srv: LoopbackServer, api_key: str
) -> None:
    srv.script(Fault.status(401, body=f"Invalid token passed. Received API Key = {api_key}"))
    with pytest.raises(af.CallError) as info:
        af.complete(messages=Q)
    assert "401" in str(info.value) or "Authentication" in str(info.value)
    assert api_key not in str(info.value)  # what a user's logger prints


def test_run_span_carries_every_budget_limit(zoo: af.ModelZoo, spans: InMemorySpanExporter) -> None:
    budget = Budget(max_usd=0.5, max_input_tokens=1000, max_output_tokens=200, max_calls=3)
    with af.run("limits", budget=budget):
        pass
    attrs = _one(spans.get_finished_spans(), "run limits").attributes
    assert attrs[A.AGENTFLOW_BUDGET_MAX_USD] == 0.5
    assert attrs[A.AGENTFLOW_BUDGET_MAX_INPUT_TOKENS] == 1000
    assert attrs[A.AGENTFLOW_BUDGET_MAX_OUTPUT_TOKENS] == 200
    assert attrs[A.AGENTFLOW_BUDGET_MAX_CALLS] == 3


def test_escalation_spans_carry_level_and_confidence(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    @af.verify(tier="small", name="judge", escalate=af.Escalate(min_confidence=0.8))
    def judge() -> af.Completion:
        return af.complete(messages=Q)

    srv.script(Reply("maybe", logprobs=[-2.0]), model="small-model")
    srv.script(Reply("sure", logprobs=[-0.05]), model="big-model")
    with af.run("esc"):
        judge()
    finished = spans.get_finished_spans()
    step = _one(finished, "judge")
    llms = sorted(_children(finished, step), key=lambda s: s.attributes[A.AGENTFLOW_ATTEMPT])
    assert [s.attributes[A.AGENTFLOW_ESCALATION_LEVEL] for s in llms] == [0, 1]
    assert [s.attributes[A.AGENTFLOW_TIER] for s in llms] == ["small", "big"]
    assert [s.attributes.get(A.AGENTFLOW_CONFIDENCE) for s in llms] == [
        pytest.approx(math.exp(-2.0)),
        pytest.approx(math.exp(-0.05)),
    ]


def test_stream_and_embedding_spans(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    @af.retrieve(name="fetch")
    def fetch() -> None:
        af.embed(["a", "b"])
        list(af.complete(messages=Q, stream=True))

    srv.script(Reply(prompt_tokens=4), Reply("x y", prompt_tokens=7, completion_tokens=2))
    with af.run("mixed"):
        fetch()
    finished = spans.get_finished_spans()
    step = _one(finished, "fetch")
    kids = {s.attributes[KIND]: s for s in _children(finished, step)}
    assert set(kids) == {"EMBEDDING", "LLM"}
    assert kids["LLM"].attributes[SpanAttributes.LLM_TOKEN_COUNT_COMPLETION] == 2
    assert A.AGENTFLOW_TTFT_S in kids["LLM"].attributes
    assert step.attributes[A.AGENTFLOW_CALLS] == 2
    total = sum(float(k.attributes[SpanAttributes.LLM_COST_TOTAL]) for k in kids.values())
    assert step.attributes[A.AGENTFLOW_COST_TOTAL_USD] == pytest.approx(total)
