"""A LangGraph ReAct agent whose every model call goes through agentflow.

    python examples/langgraph_react_agent.py          # a scripted loopback server
    python examples/langgraph_react_agent.py --api-base http://127.0.0.1:8081/v1 \
        --model openai/smollm2-135m                   # a real llama-server

The agent (``langgraph.prebuilt.create_react_agent``) has one tool, a GPU cost
calculator. ``ChatAgentflow`` is its model, so each call is routed, budgeted, priced and
traced by agentflow. The script prints, per model call: tier, tokens (cached share) and
cost; per tool call: its arguments and result; then the run's totals and report.

Without ``--api-base`` it starts a ``LoopbackServer`` scripted with a tool call and an
answer, so it runs anywhere, offline, in seconds. A tiny real model may answer without
calling the tool, or loop: the run's budget (``--max-calls``) stops a loop.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from contextlib import ExitStack

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.prebuilt import create_react_agent

import agentflow as af
from agentflow.langchain import ChatAgentflow
from agentflow.testing import LoopbackServer, Reply
from budgets import Budget, GpuHourPricing

# An L4-class GPU; the throughputs are what a 135M model sustains there.
PRICING = GpuHourPricing(
    usd_per_gpu_hour=0.80, gpus=1, prompt_tokens_per_s=9000, output_tokens_per_s=350
)
QUESTION = (
    "What do one million output tokens cost on a GPU rented at $0.80 per hour that "
    "generates 350 tokens per second? Use the tool."
)


@tool
def gpu_cost_per_mtok(usd_per_gpu_hour: float, output_tokens_per_s: float) -> str:
    """Dollars per million output tokens of a GPU-hour-billed model endpoint."""
    usd = usd_per_gpu_hour / (output_tokens_per_s * 3600) * 1_000_000
    return f"${usd:.2f} per million output tokens"


def _loopback(stack: ExitStack) -> LoopbackServer:
    """A scripted server: the model asks for the tool, then answers with its result."""
    server = stack.enter_context(LoopbackServer(name="react-demo"))
    args = {"usd_per_gpu_hour": 0.80, "output_tokens_per_s": 350}
    server.script(
        Reply(tool_calls=[{"name": "gpu_cost_per_mtok", "arguments": args}]),
        Reply("About $0.63 per million output tokens at $0.80 per GPU-hour and 350 tok/s."),
    )
    return server


def _show(message: BaseMessage) -> None:
    if isinstance(message, AIMessage):
        meta, usage = message.response_metadata, message.usage_metadata or {}
        cached = usage.get("input_token_details", {}).get("cache_read")
        what = (
            "calls " + ", ".join(c["name"] for c in message.tool_calls)
            if message.tool_calls
            else f"answers {message.text[:70]!r}"
        )
        print(
            f"  model  tier={meta['tier']:<9} in={usage.get('input_tokens', 0):>4}"
            f" (cached {cached if cached is not None else '?'})"
            f" out={usage.get('output_tokens', 0):>3}"
            f" cost=${meta['cost_usd']:.8f}  {what}"
        )
    elif isinstance(message, ToolMessage):
        print(f"  tool   {message.name}: {message.content}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-base", help="a running OpenAI-compatible endpoint")
    parser.add_argument("--model", default="openai/smollm2-135m", help="litellm model name")
    parser.add_argument("--max-calls", type=int, default=6, help="the run's budget")
    parser.add_argument("--question", default=QUESTION)
    args = parser.parse_args()

    with ExitStack() as stack:
        api_base = args.api_base or _loopback(stack).base_url
        model = args.model if args.api_base else "openai/loopback"
        endpoint = af.Endpoint(model=model, api_base=api_base, api_key="none", pricing=PRICING)
        af.configure(zoo=af.ModelZoo(tiers=[af.Tier("workhorse", endpoints=[endpoint])]))

        # the user code: a model, an agent, a run (below). create_react_agent moved to
        # langchain.agents.create_agent in LangGraph 1.0; it takes the model the same way
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            agent = create_react_agent(ChatAgentflow(tier="workhorse"), [gpu_cost_per_mtok])
        messages: list[BaseMessage] = []
        try:
            with af.run("react-agent", budget=Budget(max_calls=args.max_calls)) as run:
                for update in agent.stream(
                    {"messages": [("user", args.question)]}, stream_mode="updates"
                ):
                    for node in update.values():
                        for message in node.get("messages", []):
                            messages.append(message)
                            _show(message)
        except af.BudgetExceededError as err:
            print(f"  stopped: {err}")

    answers = [m for m in messages if isinstance(m, AIMessage) and not m.tool_calls]
    print(f"\nanswer: {answers[-1].text if answers else '(none: stopped before answering)'}")
    print(
        f"run: {run.totals.calls} model calls, {run.usage.prompt_tokens} prompt tokens "
        f"({run.usage.cached_prompt_tokens} cached), {run.usage.completion_tokens} "
        f"completion tokens, ${run.cost.total_usd:.8f}"
    )
    print(run.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
