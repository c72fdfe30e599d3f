"""LangGraph's agent quickstart (a prebuilt ReAct agent with a weather tool), on agentflow
and local llama-server replicas that make real tool calls.

    python examples/langgraph_quickstart.py             # starts 2 SmolLM2 replicas itself
    agentflow serve-local --tools --replicas 2 &        # or use running ones:
    python examples/langgraph_quickstart.py --api-base http://127.0.0.1:PORT/v1,...

The official tutorial (LangGraph docs, "Agents: quickstart") is::

    def get_weather(city: str) -> str:
        \"\"\"Get weather for a given city.\"\"\"
        return f"It's always sunny in {city}!"

    agent = create_react_agent(
        model="anthropic:claude-3-7-sonnet-latest",
        tools=[get_weather],
        prompt="You are a helpful assistant",
    )
    agent.invoke({"messages": [{"role": "user", "content": "what is the weather in sf"}]})

Here the model is ``ChatAgentflow`` over a zoo of SmolLM2-135M replicas served with
``tools=True`` (agentflow's tool-calling chat template): the ``agent`` node's reply is a
real ``tool_calls`` message, constrained by llama-server's grammar to the tool's schema;
the tool runs; the model answers with its result. A 135M model does not decide to call
a tool on its own, so its endpoints say ``tool_choice_by_turn=True``: a tool call is
required on the user's turn and ruled out once the tool has answered; the agent itself
is the tutorial's, unchanged.

The question is asked twice with the ``agent`` node's exact cache on: the second run's
model calls are cache hits that cost nothing and reach no replica. After each run: every
model call (node, tier, tokens, cost, cache hit), the run's report (a row per node) and
its totals. ``--json FILE`` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from contextlib import ExitStack
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.prebuilt import create_react_agent

import agentflow as af
from agentflow.langchain import ChatAgentflow
from agentflow.local import serve_local
from budgets import Budget, GpuHourPricing

# An L4-class GPU; the throughputs are what a 135M model sustains there.
PRICING = GpuHourPricing(
    usd_per_gpu_hour=0.80, gpus=1, prompt_tokens_per_s=9000, output_tokens_per_s=350
)


# --- the tutorial's tool, unchanged -----------------------------------------------------
def get_weather(city: str) -> str:
    """Get weather for a given city."""
    return f"It's always sunny in {city}!"


def zoo(api_bases: list[str], model: str) -> af.ModelZoo:
    # tool_choice_by_turn: a 135M model does not decide to call a tool on its own, so the
    # endpoint asks for a call on the user's turn and for an answer once the tool answered
    endpoints = [
        af.Endpoint(
            model=model,
            api_base=base,
            api_key="none",
            pricing=PRICING,
            timeout=120,
            tool_choice_by_turn=True,
        )
        for base in api_bases
    ]
    return af.ModelZoo(tiers=[af.Tier("local", endpoints=endpoints)])


def build_agent(max_tokens: int) -> Any:
    # --- the port: the model ---------------------------------------------------------
    # the agent node's answers, tool calls included, come from the exact cache when seen
    cache = af.CachePolicy("exact", allow_tool_calls=True)
    llm = ChatAgentflow(
        tier="local", temperature=0, max_tokens=max_tokens, nodes={"agent": {"cache": cache}}
    )

    # create_react_agent moved to langchain.agents.create_agent in LangGraph 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return create_react_agent(
            model=llm, tools=[get_weather], prompt="You are a helpful assistant"
        )


def run_once(agent: Any, question: str, label: str) -> dict[str, Any]:
    """One run of the agent, printed as it goes; returns what it did, as JSON values."""
    calls: list[dict[str, Any]] = []
    tools: list[dict[str, Any]] = []
    print(f"\n== {label}: {question!r}")
    with af.run(f"quickstart-{label}", budget=Budget(max_calls=6)) as run:
        for update in agent.stream(
            {"messages": [{"role": "user", "content": question}]}, stream_mode="updates"
        ):
            for node, state in update.items():
                for message in (state or {}).get("messages", []):
                    if isinstance(message, AIMessage):
                        calls.append(show_model_call(node, message))
                    elif isinstance(message, ToolMessage):
                        print(f"  {node:<6} {message.name}() -> {message.content!r}")
                        tools.append({"name": message.name, "content": message.content})
    print(run.report())
    print(
        f"totals: {run.totals.calls} model calls, {run.totals.cache_hits} cache hits, "
        f"{run.usage.prompt_tokens} prompt + {run.usage.completion_tokens} completion "
        f"tokens, ${run.cost.total_usd:.8f}"
    )
    return {
        "calls": calls,
        "tools": tools,
        "steps": {
            name: {
                "calls": s.calls,
                "cache_hits": s.totals.cache_hits,
                "tiers": sorted(s.tiers),
                "cost_usd": float(s.cost.total_usd),
            }
            for name, s in run.steps.items()
        },
        "total": {
            "calls": run.totals.calls,
            "cache_hits": run.totals.cache_hits,
            "cost_usd": float(run.cost.total_usd),
        },
    }


def show_model_call(node: str, message: AIMessage) -> dict[str, Any]:
    meta = message.response_metadata
    usage: dict[str, Any] = dict(message.usage_metadata or {})
    if message.tool_calls:
        what = "calls " + ", ".join(f"{c['name']}({c['args']})" for c in message.tool_calls)
    else:
        what = f"answers {message.text[:60]!r}"
    hit = "hit " if meta.get("cache_hit") else "miss"
    print(
        f"  {node:<6} tier={meta['tier']} in={usage.get('input_tokens', 0):>3} "
        f"out={usage.get('output_tokens', 0):>3} ${meta['cost_usd']:.8f} cache {hit} {what}"
    )
    return {
        "node": node,
        "tier": meta["tier"],
        "cache_hit": bool(meta.get("cache_hit")),
        "tool_calls": [{"name": c["name"], "args": c["args"]} for c in message.tool_calls],
        "text": message.text,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-base", help="comma-separated base URLs of running replicas")
    parser.add_argument("--model", default="openai/smollm2-135m", help="litellm model name")
    parser.add_argument("--question", default="what is the weather in sf")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--json", help="also write the runs' calls and rows to this file")
    args = parser.parse_args()

    with ExitStack() as stack:
        if args.api_base:
            bases = args.api_base.split(",")
        else:
            print("starting 2 SmolLM2-135M replicas with tool calls (serve_local, tools=True)")
            servers = stack.enter_context(serve_local("smollm2", replicas=2, threads=1, tools=True))
            bases = [s.base_url for s in servers]
        cache_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="quickstart-"))
        af.configure(zoo=zoo(bases, args.model), cache_dir=cache_dir)
        agent = build_agent(args.max_tokens)
        runs = [run_once(agent, args.question, label) for label in ("first", "again")]
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"runs": runs}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
