"""``ChatAgentflow`` in a real LangGraph ReAct agent (``langgraph.prebuilt``): the tool
round trip, streamed messages, run budgets and concurrent runs, all on the loopback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage
from langchain_core.tools import tool

import agentflow as af
from agentflow.langchain import ChatAgentflow
from agentflow.testing import LoopbackServer, Reply
from budgets import Budget

with warnings.catch_warnings():  # deprecated in favour of langchain.agents, still shipped
    warnings.simplefilter("ignore")
    from langgraph.prebuilt import create_react_agent

FINAL = "It is sunny in Paris today."
QUESTION = {"messages": [("user", "What is the weather in Paris?")]}


def _chats(srv: LoopbackServer) -> list[Any]:
    return [r for r in srv.requests if r.path.endswith("/chat/completions")]


def _round_trip(city: str = "Paris", answer: str = FINAL, **reply: Any) -> tuple[Reply, Reply]:
    call = {"name": "get_weather", "arguments": {"city": city}, "id": f"call-{city}"}
    return Reply(tool_calls=[call], **reply), Reply(answer, **reply)


def _agent(tier: str, seen: list[str]) -> Any:
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(ChatAgentflow(tier=tier), [get_weather])


def test_react_agent_round_trip_inside_a_run(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    seen: list[str] = []
    agent = _agent("small", seen)
    srv.script(*_round_trip())

    with af.run("react") as run:
        out = agent.invoke(QUESTION)

    assert seen == ["Paris"]  # the tool really ran, with the model's arguments
    messages = out["messages"]
    assert isinstance(messages[1], AIMessage)
    assert messages[1].tool_calls[0]["args"] == {"city": "Paris"}
    assert isinstance(messages[2], ToolMessage)
    assert messages[2].content == "sunny in Paris"
    assert isinstance(messages[-1], AIMessage)
    assert messages[-1].content == FINAL
    assert messages[-1].response_metadata["tier"] == "small"
    assert run.totals.calls == 2
    assert run.cost.total_usd > 0
    costs = [m.response_metadata["cost_usd"] for m in messages if isinstance(m, AIMessage)]
    assert sum(costs) == pytest.approx(float(run.cost.total_usd))

    first, second = _chats(srv)
    assert [t["function"]["name"] for t in first.body["tools"]] == ["get_weather"]
    tool_turn = second.body["messages"][-1]
    assert tool_turn["role"] == "tool"
    assert (tool_turn["tool_call_id"], tool_turn["content"]) == ("call-Paris", "sunny in Paris")


async def test_react_agent_stream_mode_messages_streams_the_answer(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    seen: list[str] = []
    agent = _agent("small", seen)
    srv.script(*_round_trip())

    async with af.run("react-stream") as run:
        parts = [
            (chunk, meta) async for chunk, meta in agent.astream(QUESTION, stream_mode="messages")
        ]

    answer = [
        c
        for c, meta in parts
        if isinstance(c, AIMessageChunk) and meta["langgraph_step"] == 3 and c.content
    ]
    assert len(answer) >= 5  # token by token, not one message at the end
    assert "".join(str(c.content) for c in answer) == FINAL
    assert seen == ["Paris"]
    assert all(r.body["stream"] is True for r in _chats(srv))
    assert run.totals.calls == 2


def test_a_run_budget_refuses_the_agents_second_call(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    seen: list[str] = []
    agent = _agent("small", seen)
    srv.script(*_round_trip())

    with (
        pytest.raises(af.BudgetExceededError),
        af.run("react-budget", budget=Budget(max_calls=1)) as run,
    ):
        agent.invoke(QUESTION)

    assert seen == ["Paris"]  # the first call's tool ran; the second call never went out
    assert len(_chats(srv)) == 1
    assert run.totals.calls == 1


async def test_concurrent_graphs_keep_their_runs_apart(
    zoo: af.ModelZoo, srv: LoopbackServer
) -> None:
    seen_small: list[str] = []
    seen_big: list[str] = []
    small, big = _agent("small", seen_small), _agent("big", seen_big)
    # one queue per model, and latency so that the two runs overlap
    srv.script(*_round_trip("Paris", "Sunny in Paris.", latency=0.2), model="small-model")
    srv.script(*_round_trip("Lima", "Sunny in Lima.", latency=0.2), model="big-model")

    async def go(name: str, agent: Any, city: str) -> tuple[Any, af.Run]:
        async with af.run(name) as run:
            out = await agent.ainvoke({"messages": [("user", f"Weather in {city}?")]})
        return out, run

    (out_a, run_a), (out_b, run_b) = await asyncio.gather(
        go("run-a", small, "Paris"), go("run-b", big, "Lima")
    )

    assert out_a["messages"][-1].content == "Sunny in Paris."
    assert out_b["messages"][-1].content == "Sunny in Lima."
    assert (seen_small, seen_big) == (["Paris"], ["Lima"])
    assert run_a.totals.calls == 2
    assert run_b.totals.calls == 2
    assert {a.tier for a in run_a.attempts} == {"small"}
    assert {a.tier for a in run_b.attempts} == {"big"}
    assert run_b.cost.total_usd > run_a.cost.total_usd > 0  # big costs ten times more
    for out, run in ((out_a, run_a), (out_b, run_b)):
        costs = [m.response_metadata["cost_usd"] for m in out["messages"] if m.type == "ai"]
        assert sum(costs) == pytest.approx(float(run.cost.total_usd))


def test_the_react_agent_example_runs_on_the_loopback() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "langgraph_react_agent.py"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, str(example)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "tool   gpu_cost_per_mtok: $0.63 per million output tokens" in done.stdout
    assert "answer: About $0.63 per million output tokens" in done.stdout
    assert "run: 2 model calls" in done.stdout
