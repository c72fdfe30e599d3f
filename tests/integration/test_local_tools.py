"""Tool calls on real llama-server replicas: ``serve_local(..., tools=True)``.

SmolLM2's own chat template has no tools, so llama-server drops them from the prompt and
never parses a call; with agentflow's template (``TOOLS_TEMPLATE``) a request with
``tool_choice="required"`` gets a grammar-constrained ``tool_calls`` reply.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk

import agentflow as af
from agentflow._config import reset
from agentflow.langchain import ChatAgentflow
from agentflow.local import TOOLS_TEMPLATE, LlamaServer, serve_local, tools_template
from tests.integration.conftest import LLAMA_PRICING

pytestmark = pytest.mark.integration

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get weather for a given city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def get_weather(city: str) -> str:
    """Get weather for a given city."""
    return f"It's always sunny in {city}!"


@pytest.fixture(scope="module")
def tool_server() -> Iterator[LlamaServer]:
    with serve_local("smollm2", threads=1, parallel=2, tools=True) as (server,):
        yield server


@pytest.fixture
def tools_zoo(tool_server: LlamaServer) -> Iterator[None]:
    endpoint = af.Endpoint(
        model="openai/" + tool_server.alias,
        api_base=tool_server.base_url,
        pricing=LLAMA_PRICING,
        timeout=180,
    )
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("local", endpoints=[endpoint])]))
    yield
    reset()


def test_a_model_without_a_tools_template_is_refused_before_starting() -> None:
    with pytest.raises(af.LocalServerError, match="no tool-calling chat template"):
        LlamaServer("gemma3-270m", tools=True)
    with pytest.raises(af.LocalServerError, match="no such file"):
        LlamaServer("smollm2", chat_template="/nonexistent/template.jinja")
    assert tools_template("smollm2") == TOOLS_TEMPLATE
    assert tools_template(Path("/models/qwen2.5-0.5b-instruct.gguf")) == TOOLS_TEMPLATE
    assert TOOLS_TEMPLATE.is_file()


def agentflow_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentflow.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_serve_local_cli_takes_tools() -> None:
    done = agentflow_cli("serve-local", "--install-only", "--tools")
    assert done.returncode == 0, done.stderr
    assert f"tools-template {TOOLS_TEMPLATE}" in done.stdout.splitlines()
    refused = agentflow_cli("serve-local", "--model", "gemma3-270m", "--tools")
    assert refused.returncode == 1
    assert "no tool-calling chat template" in refused.stderr


def test_the_served_template_reads_tool_calls(tool_server: LlamaServer) -> None:
    props = tool_server.props()
    assert props["chat_template_caps"]["supports_tool_calls"] is True
    assert "<function=" in props["chat_template"]
    log = tool_server.log_path
    assert log is not None
    assert "--chat-template-file" in log.read_text().splitlines()[0]


def test_required_gives_a_grammar_constrained_tool_call(tools_zoo: None) -> None:
    with af.run("tools") as run:
        completion = af.complete(
            QUESTION,
            tier="local",
            tools=[WEATHER],
            tool_choice="required",
            parallel_tool_calls=False,
            temperature=0,
            max_tokens=40,
        )
    (call,) = completion.tool_calls
    assert call["function"]["name"] == "get_weather"
    args = json.loads(call["function"]["arguments"])
    assert set(args) == {"city"}
    assert isinstance(args["city"], str)
    assert args["city"]
    assert run.totals.calls == 1
    assert run.cost.total_usd > 0


def test_none_after_the_tool_result_gives_text(tools_zoo: None) -> None:
    history: list[dict[str, Any]] = [
        *QUESTION,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call-1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call-1", "content": "It's always sunny in Paris!"},
    ]
    completion = af.complete(
        history, tier="local", tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=30
    )
    assert not completion.tool_calls
    assert completion.text.strip()
    assert "<function=" not in completion.text


def test_chat_agentflow_gets_the_call_invoked_and_streamed(tools_zoo: None) -> None:
    llm = ChatAgentflow(tier="local", temperature=0, max_tokens=40).bind_tools(
        [get_weather], tool_choice="required", parallel_tool_calls=False
    )
    message = llm.invoke("What is the weather in Paris?")
    assert [c["name"] for c in message.tool_calls] == ["get_weather"]
    assert message.response_metadata["tier"] == "local"

    chunks = list(llm.stream("What is the weather in Rome?"))
    assert len(chunks) > 1
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert isinstance(full, AIMessageChunk)
    assert [c["name"] for c in full.tool_calls] == ["get_weather"]
    assert isinstance(full.tool_calls[0]["args"]["city"], str)
    assert full.usage_metadata is not None
    assert full.usage_metadata["output_tokens"] > 0


def test_without_the_template_smollm2_never_calls(replica_zoo: af.ModelZoo) -> None:
    # the reason for tools=True: SmolLM2's own template drops the tools
    completion = af.complete(
        QUESTION,
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
        max_tokens=16,
    )
    assert not completion.tool_calls
    assert completion.text


def test_a_plain_prebuilt_react_agent_makes_a_real_tool_round_trip(
    tool_server: LlamaServer,
) -> None:
    """``create_react_agent(ChatAgentflow(tier=...), tools)`` unchanged: the endpoint's
    ``tool_choice_by_turn`` asks for a tool call on the user's turn and an answer once
    the tool has answered, so the 135M model makes the round trip on a real engine."""
    import warnings

    from langchain_core.messages import AIMessage, ToolMessage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langgraph.prebuilt import create_react_agent

    endpoint = af.Endpoint(
        model="openai/" + tool_server.alias,
        api_base=tool_server.base_url,
        pricing=LLAMA_PRICING,
        timeout=180,
        tool_choice_by_turn=True,
    )
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("local", endpoints=[endpoint])]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            agent = create_react_agent(
                ChatAgentflow(tier="local", temperature=0, max_tokens=48), [get_weather]
            )
        with af.run("plain-react") as run:
            out = agent.invoke({"messages": [("user", "What is the weather in Paris?")]})
    finally:
        reset()
    messages = out["messages"]
    calls = [m for m in messages if isinstance(m, AIMessage) and m.tool_calls]
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert [c.tool_calls[0]["name"] for c in calls] == ["get_weather"]
    assert results
    assert "sunny" in str(results[0].content)
    assert isinstance(messages[-1], AIMessage)
    assert not messages[-1].tool_calls  # the model answered after the tool
    assert set(run.steps) == {"agent"}
    assert run.steps["agent"].calls == 2
    assert run.cost.total_usd > 0
