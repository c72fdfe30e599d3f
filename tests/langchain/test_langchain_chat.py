"""``ChatAgentflow`` against the real loopback server: messages, usage and cost metadata,
streaming, tools, structured output; each call goes through ``af.complete``."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from typing import Any, TypedDict

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from pydantic import BaseModel

import agentflow as af
from agentflow.langchain import ChatAgentflow
from agentflow.testing import LoopbackServer, Reply

QUESTION = [SystemMessage("Answer in one sentence."), HumanMessage("Capital of France?")]


def _chats(srv: LoopbackServer) -> list[Any]:
    return [r for r in srv.requests if r.path.endswith("/chat/completions")]


def _small_cost(prompt: int, completion: int, cached: int = 0) -> float:
    # SMALL_PRICE: $1 / $0.50 (cached) / $2 per 1M input / cached input / output tokens
    usd = Decimal(prompt - cached) + Decimal("0.5") * cached + 2 * Decimal(completion)
    return float(usd / 1_000_000)


def _joined(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class City(BaseModel):
    """A city and its country."""

    name: str
    country: str


# --- invoke, ainvoke, batch, abatch --------------------------------------------------
def test_invoke_returns_an_ai_message_with_usage_and_cost(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply("Paris.", prompt_tokens=20, cached_tokens=8, completion_tokens=3))
    model = ChatAgentflow(tier="small", temperature=0.2, max_tokens=50, stop=["\n\n"])

    message = model.invoke(QUESTION)

    assert isinstance(message, AIMessage)
    assert message.content == "Paris."
    assert message.usage_metadata == {
        "input_tokens": 20,
        "output_tokens": 3,
        "total_tokens": 23,
        "input_token_details": {"cache_read": 8},
    }
    meta = message.response_metadata
    assert meta["tier"] == "small"
    assert meta["model_name"] == "small-model"
    assert meta["endpoint"].startswith("openai/small-model@")
    assert meta["cost_usd"] == pytest.approx(_small_cost(20, 3, cached=8))
    assert meta["cost_usd"] > 0
    assert (meta["cache_hit"], meta["confidence"], meta["attempts"]) == (False, None, 1)
    assert meta["finish_reason"] == "stop"

    body = _chats(srv)[-1].body
    assert body["model"] == "small-model"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"] == "Capital of France?"
    assert (body["temperature"], body["max_tokens"], body["stop"]) == (0.2, 50, ["\n\n"])


def test_cache_read_is_left_out_when_the_engine_does_not_report_it(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply("Paris.", prompt_tokens=20, completion_tokens=3))
    message = ChatAgentflow(tier="small").invoke("Capital of France?")
    assert message.usage_metadata == {"input_tokens": 20, "output_tokens": 3, "total_tokens": 23}


async def test_ainvoke_inside_a_run_is_accounted(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply("Paris.", prompt_tokens=10, completion_tokens=2))
    async with af.run("lc-async") as run:
        message = await ChatAgentflow(tier="big").ainvoke("Capital of France?")
    assert message.content == "Paris."
    assert message.response_metadata["tier"] == "big"
    assert message.response_metadata["cost_usd"] == pytest.approx(float(run.cost.total_usd))
    assert run.totals.calls == 1
    assert _chats(srv)[-1].body["model"] == "big-model"


@pytest.mark.parametrize("mode", ["batch", "abatch"])
async def test_batch_and_abatch_answer_each_input(
    zoo: af.ModelZoo, srv: LoopbackServer, mode: str
) -> None:
    model = ChatAgentflow(tier="small")
    questions = ["Capital of France?", "Capital of Peru?", "Capital of Chad?"]
    async with af.run(f"lc-{mode}") as run:
        if mode == "batch":
            messages = model.batch(questions)
        else:
            messages = await model.abatch(questions)
    # nothing scripted: the server echoes each question, so answers match their inputs
    assert [m.content for m in messages] == [f"echo: {q}" for q in questions]
    for message in messages:
        assert message.usage_metadata is not None
        assert message.usage_metadata["output_tokens"] > 0
        assert message.response_metadata["cost_usd"] > 0
    assert run.totals.calls == 3
    assert len(_chats(srv)) == 3


def test_inside_a_step_it_follows_the_step_tier(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    model = ChatAgentflow()  # no tier: the step's, else the zoo's default

    @af.plan(tier="big", name="lc-plan")
    def plan(question: str) -> BaseMessage:
        return model.invoke(question)

    with af.run("lc-step") as run:
        in_step = plan("Plan a trip")
        outside = model.invoke("Plan a trip")
        per_call = model.bind(tier="big").invoke("Plan a trip")

    assert in_step.response_metadata["tier"] == "big"
    assert outside.response_metadata["tier"] == "small"  # the zoo's default (first) tier
    assert per_call.response_metadata["tier"] == "big"
    assert [r.body["model"] for r in _chats(srv)] == ["big-model", "small-model", "big-model"]
    assert run.steps["lc-plan"].calls == 1
    assert run.totals.calls == 3


def test_llm_type_and_identifying_params() -> None:
    model = ChatAgentflow(tier="small", temperature=0.0, model_kwargs={"logprobs": True})
    assert model._llm_type == "agentflow"
    assert model._identifying_params == {"tier": "small", "temperature": 0.0, "logprobs": True}


# --- streaming --------------------------------------------------------------------------
ANSWER = "Paris is the capital of France."


def test_stream_yields_text_chunks_then_usage(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply(ANSWER, prompt_tokens=12, completion_tokens=6))
    with af.run("lc-stream") as run:
        chunks = list(ChatAgentflow(tier="small").stream("Capital of France?"))

    texts = [c.content for c in chunks if c.content]
    assert len(texts) >= 5
    assert "".join(str(t) for t in texts) == ANSWER
    assert all(c.usage_metadata is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.usage_metadata is not None
    assert last.usage_metadata["input_tokens"] == 12
    assert last.usage_metadata["output_tokens"] == 6
    assert last.response_metadata["cost_usd"] == pytest.approx(_small_cost(12, 6))
    assert last.response_metadata["finish_reason"] == "stop"
    joined = _joined(chunks)
    assert joined.content == ANSWER
    assert joined.usage_metadata == last.usage_metadata
    assert _chats(srv)[-1].body["stream"] is True
    assert run.totals.calls == 1
    assert float(run.cost.total_usd) == pytest.approx(_small_cost(12, 6))


async def test_astream_yields_text_chunks_then_usage(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply(ANSWER, prompt_tokens=12, completion_tokens=6))
    async with af.run("lc-astream") as run:
        chunks = [c async for c in ChatAgentflow(tier="small").astream("Capital of France?")]
    assert len([c for c in chunks if c.content]) >= 5
    joined = _joined(chunks)
    assert joined.content == ANSWER
    assert joined.usage_metadata is not None
    assert joined.usage_metadata["total_tokens"] == 18
    assert chunks[-1].response_metadata["tier"] == "small"
    assert run.totals.calls == 1


def test_a_stream_left_early_is_still_paid_for(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply(ANSWER, prompt_tokens=12))
    with af.run("lc-abandon") as run:
        stream = ChatAgentflow(tier="small").stream("Capital of France?")
        first = next(stream)
        stream.close()
    assert first.content == "Paris"
    assert run.totals.calls == 1
    assert run.cost.total_usd > 0


def test_streaming_true_streams_under_invoke(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply(ANSWER))
    message = ChatAgentflow(tier="small", streaming=True).invoke("Capital of France?")
    assert message.content == ANSWER
    assert _chats(srv)[-1].body["stream"] is True
    assert message.usage_metadata is not None
    assert message.response_metadata["cost_usd"] > 0


# --- tools ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ("any", "required"),
        ("get_weather", {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_bind_tools_sends_tools_and_tool_choice(
    zoo: af.ModelZoo, srv: LoopbackServer, choice: str, sent: Any
) -> None:
    srv.script(Reply("ok"))
    ChatAgentflow(tier="small").bind_tools([get_weather], tool_choice=choice).invoke("Weather?")
    body = _chats(srv)[-1].body
    (tool,) = body["tools"]
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "get_weather"
    assert tool["function"]["description"] == "The weather in a city."
    assert tool["function"]["parameters"]["properties"] == {"city": {"type": "string"}}
    assert body["tool_choice"] == sent


def test_bind_tools_without_tool_choice_sends_none(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    ChatAgentflow(tier="small").bind_tools([get_weather, City]).invoke("Weather?")
    body = _chats(srv)[-1].body
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "City"]
    assert "tool_choice" not in body


def test_a_tool_choice_naming_no_bound_tool_fails() -> None:
    with pytest.raises(af.ConfigError, match="names no bound tool"):
        ChatAgentflow(tier="small").bind_tools([get_weather], tool_choice="search")


def test_tool_calls_are_parsed(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(
        Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "c1"}])
    )
    message = ChatAgentflow(tier="small").bind_tools([get_weather]).invoke("Weather in Paris?")
    assert isinstance(message, AIMessage)
    assert message.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "c1", "type": "tool_call"}
    ]
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert message.response_metadata["cost_usd"] > 0


def test_a_tool_call_with_broken_json_is_an_invalid_tool_call(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply(tool_calls=[{"name": "get_weather", "arguments": '{"city": "Par'}]))
    message = ChatAgentflow(tier="small").bind_tools([get_weather]).invoke("Weather?")
    assert isinstance(message, AIMessage)
    assert message.tool_calls == []
    (invalid,) = message.invalid_tool_calls
    assert invalid["name"] == "get_weather"
    assert invalid["args"] == '{"city": "Par'


def test_tool_calls_and_results_in_the_history_are_sent(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    history = [
        HumanMessage("Weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
        ToolMessage("sunny in Paris", tool_call_id="c1"),
    ]
    srv.script(Reply("Sunny."))
    ChatAgentflow(tier="small").bind_tools([get_weather]).invoke(history)
    sent = _chats(srv)[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    (call,) = sent[1]["tool_calls"]
    assert call["id"] == "c1"
    assert call["function"]["name"] == "get_weather"
    assert call["function"]["arguments"] == '{"city": "Paris"}'
    assert sent[2]["tool_call_id"] == "c1"
    assert sent[2]["content"] == "sunny in Paris"


def test_streamed_tool_call_chunks_assemble_into_a_tool_call(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(
        Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "c7"}])
    )
    bound = ChatAgentflow(tier="small").bind_tools([get_weather])
    chunks = list(bound.stream("Weather in Paris?"))
    with_calls = [c for c in chunks if c.tool_call_chunks]
    assert len(with_calls) >= 2  # the name first, the arguments after
    assert with_calls[0].tool_call_chunks[0]["name"] == "get_weather"
    joined = _joined(chunks)
    assert joined.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "c7", "type": "tool_call"}
    ]
    assert joined.response_metadata["finish_reason"] == "tool_calls"
    assert joined.usage_metadata is not None


async def test_astreamed_tool_call_chunks_assemble(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Lima"}}]))
    bound = ChatAgentflow(tier="small").bind_tools([get_weather], tool_choice="required")
    chunks = [c async for c in bound.astream("Weather in Lima?")]
    (call,) = _joined(chunks).tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": "Lima"})
    assert _chats(srv)[-1].body["tool_choice"] == "required"


# --- structured output ----------------------------------------------------------------
def test_structured_output_json_schema_is_validated_by_the_pipeline(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply(json={"name": "Paris", "country": "France"}))
    city = ChatAgentflow(tier="small").with_structured_output(City).invoke("Capital of France?")
    assert city == City(name="Paris", country="France")
    response_format = _chats(srv)[-1].body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "City"
    assert set(response_format["json_schema"]["schema"]["properties"]) == {"name", "country"}
    assert "tools" not in _chats(srv)[-1].body


def test_structured_output_include_raw(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply(json={"name": "Lima", "country": "Peru"}))
    model = ChatAgentflow(tier="small").with_structured_output(City, include_raw=True)
    out: Any = model.invoke("Capital of Peru?")
    assert out["parsed"] == City(name="Lima", country="Peru")
    assert out["parsing_error"] is None
    assert isinstance(out["raw"], AIMessage)
    assert out["raw"].response_metadata["cost_usd"] > 0


class CityDict(TypedDict):
    """A city."""

    name: str


def test_structured_output_with_a_typeddict_gives_a_dict(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply(json={"name": "Paris"}))
    out = ChatAgentflow(tier="small").with_structured_output(CityDict).invoke("Capital?")
    assert out == {"name": "Paris"}
    json_schema = _chats(srv)[-1].body["response_format"]["json_schema"]
    assert json_schema["name"] == "CityDict"
    assert json_schema["schema"]["properties"] == {"name": {"type": "string"}}


async def test_structured_output_function_calling_forces_the_schema_tool(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply(tool_calls=[{"name": "City", "arguments": {"name": "Rome", "country": "IT"}}]))
    model = ChatAgentflow(tier="small").with_structured_output(City, method="function_calling")
    city = await model.ainvoke("Capital of Italy?")
    assert city == City(name="Rome", country="IT")
    body = _chats(srv)[-1].body
    assert [t["function"]["name"] for t in body["tools"]] == ["City"]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "City"}}
    assert "response_format" not in body


def test_structured_output_rejects_an_unknown_method() -> None:
    with pytest.raises(af.ConfigError, match="json_schema"):
        ChatAgentflow().with_structured_output(City, method="xml")  # type: ignore[arg-type]


# --- import cost --------------------------------------------------------------------------
def test_import_agentflow_does_not_import_langchain() -> None:
    code = (
        "import agentflow, sys; "
        "assert 'langchain_core' not in sys.modules, 'agentflow imported langchain_core'; "
        "import agentflow.langchain; assert 'langchain_core' in sys.modules"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


# --- the pipeline's cache and escalation show on the message ---------------------------
def test_a_cache_hit_is_free_and_gets_its_own_message_id(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    srv.script(Reply("Paris.", prompt_tokens=10, completion_tokens=2))
    model = ChatAgentflow(tier="small").bind(cache="exact")
    first = model.invoke("Capital of France?")
    second = model.invoke("Capital of France?")
    assert second.content == "Paris."
    assert second.response_metadata["cache_hit"] is True
    assert second.response_metadata["cost_usd"] == 0
    assert second.usage_metadata is not None
    assert second.usage_metadata["total_tokens"] == 0
    assert first.response_metadata["cache_hit"] is False
    assert first.id != second.id  # LangGraph's add_messages would merge equal ids
    assert len(_chats(srv)) == 1


def test_an_escalated_answer_reports_every_attempt(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    def sure_on_big(c: af.Completion) -> float:
        return 0.9 if c.tier == "big" else 0.1

    model = ChatAgentflow()

    @af.verify(tier="small", escalate=af.Escalate(min_confidence=0.8, scorer=sure_on_big))
    def check(question: str) -> BaseMessage:
        return model.invoke(question)

    srv.script(
        Reply("Lyon", prompt_tokens=10, completion_tokens=1),
        Reply("Paris", prompt_tokens=10, completion_tokens=1),
    )
    message = check("Capital of France?")
    meta = message.response_metadata
    assert message.content == "Paris"
    assert (meta["tier"], meta["attempts"], meta["confidence"]) == ("big", 2, 0.9)
    # both attempts were paid for: 10 + 1 tokens at the small price, then at the big one
    assert meta["cost_usd"] == pytest.approx(_small_cost(10, 1) * 11)
    assert message.usage_metadata is not None
    assert message.usage_metadata["total_tokens"] == 22


def test_cache_writes_are_reported_as_cache_creation(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    srv.script(Reply("Paris.", prompt_tokens=20, cached_tokens=4, cache_write_tokens=12))
    message = ChatAgentflow(tier="small").invoke("Capital of France?")
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_token_details"] == {"cache_read": 4, "cache_creation": 12}
