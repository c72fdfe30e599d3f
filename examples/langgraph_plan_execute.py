"""LangGraph's Plan-and-Execute tutorial on agentflow and local llama-server replicas.

    python examples/langgraph_plan_execute.py           # starts 2 SmolLM2 replicas itself
    agentflow serve-local --tools --replicas 2 &        # or use running ones:
    python examples/langgraph_plan_execute.py --api-base http://127.0.0.1:PORT/v1,...

The official tutorial (LangGraph docs, "Plan-and-Execute") as written, with three ports:

* the model is ``ChatAgentflow`` (one zoo tier of SmolLM2-135M replicas served with
  ``tools=True``) instead of ``ChatOpenAI``: the planner and the replanner use
  ``with_structured_output`` (agentflow's ``response_format`` path, which llama-server
  turns into a grammar), the executor is ``create_react_agent`` with a real tool call;
* the web search tool (Tavily) is a local lookup over a few facts, so it runs offline;
* for a 135M model: the executor's tool call is required on the task's turn and ruled
  out once the tool answered (LangGraph's dynamic model), plans have at most two short
  steps, a presence penalty keeps greedy decoding from repeating itself, and the run's
  budget (``max_calls``) stops a replanner that never answers.

The graph runs asynchronously (``astream``), as in the tutorial. It prints each node's
update, then the run's report: a row per node (``planner``, ``agent`` for the
executor's model calls, ``replan``) with tier, calls, cache hits, tokens and cost, and the
totals. ``--json FILE`` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import sys
import tempfile
import warnings
from contextlib import ExitStack
from typing import Annotated, Any, TypedDict

from langchain_core.messages import HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import create_react_agent
from pydantic import BaseModel, Field

import agentflow as af
from agentflow.langchain import ChatAgentflow
from agentflow.local import serve_local
from budgets import Budget, GpuHourPricing

PRICING = GpuHourPricing(
    usd_per_gpu_hour=0.80, gpus=1, prompt_tokens_per_s=9000, output_tokens_per_s=350
)
FACTS = {
    "australian open": "Jannik Sinner won the men's singles at the 2024 Australian Open.",
    "sinner": "Jannik Sinner was born in San Candido (Innichen), Italy, his hometown.",
}


SEARCHES: list[dict[str, str]] = []  # what the executor's tool calls asked and got


# --- port: a local search tool instead of TavilySearchResults -----------------------------
def search(query: str) -> str:
    """Search the web for a query."""
    found = [fact for key, fact in FACTS.items() if key in query.lower()]
    result = " ".join(found) or " ".join(FACTS.values())
    SEARCHES.append({"query": query, "result": result})
    print(f"           search({query!r}) -> {result[:60]!r}...")
    return result


tools = [search]


# --- the tutorial's state and schemas (port: plans of at most two short steps) --------
class PlanExecute(TypedDict):
    input: str
    plan: list[str]
    past_steps: Annotated[list[tuple[str, str]], operator.add]
    response: str


Step = Annotated[str, Field(max_length=40)]


class Plan(BaseModel):
    """Plan to follow in future"""

    steps: list[Step] = Field(
        description="different steps to follow, should be in sorted order",
        min_length=1,
        max_length=2,
    )


class Response(BaseModel):
    """Response to user."""

    response: Annotated[str, Field(max_length=80)]


class Act(BaseModel):
    """Action to perform."""

    action: Response | Plan = Field(
        description="Action to perform. If you want to respond to user, use Response. "
        "If you need to further use tools to get the answer, use Plan."
    )


planner_prompt = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            """For the given objective, come up with a simple step by step plan. \
This plan should involve individual tasks, that if executed correctly will yield the correct \
answer. Do not add any superfluous steps. The result of the final step should be the final \
answer. Make sure that each step has all the information needed - do not skip steps.""",
        ),
        ("placeholder", "{messages}"),
    ]
)
replanner_prompt = ChatPromptTemplate.from_template(
    """For the given objective, come up with a simple step by step plan. \
This plan should involve individual tasks, that if executed correctly will yield the correct \
answer. Do not add any superfluous steps. The result of the final step should be the final \
answer. Make sure that each step has all the information needed - do not skip steps.

Your objective was this:
{input}

Your original plan was this:
{plan}

You have currently done the follow steps:
{past_steps}

Update your plan accordingly. If no more steps are needed and you can return to the user, \
then respond with that. Otherwise, fill out the plan. Only add steps to the plan that still \
NEED to be done. Do not return previously done steps as part of the plan."""
)


def build_app(max_tokens: int) -> Any:
    # --- port: the model -----------------------------------------------------------------
    # presence_penalty: greedy decoding of a 135M model otherwise repeats itself
    llm = ChatAgentflow(
        tier="local",
        temperature=0,
        max_tokens=max_tokens,
        model_kwargs={"presence_penalty": 1.0},
    )

    def executor_model(state: dict[str, Any], runtime: Any) -> Any:
        # required on the task's turn, none once the tool answered (a 135M model)
        choice = "required" if isinstance(state["messages"][-1], HumanMessage) else "none"
        return llm.bind_tools(tools, tool_choice=choice, parallel_tool_calls=False)

    with warnings.catch_warnings():  # moved to langchain.agents.create_agent in 1.0
        warnings.simplefilter("ignore", DeprecationWarning)
        agent_executor = create_react_agent(
            executor_model, tools, prompt="You are a helpful assistant."
        )
    planner = planner_prompt | llm.with_structured_output(Plan)
    replanner = replanner_prompt | llm.with_structured_output(Act)

    # --- the tutorial's nodes and graph, unchanged --------------------------------------
    async def execute_step(state: PlanExecute) -> dict[str, Any]:
        plan = state["plan"]
        plan_str = "\n".join(f"{i + 1}. {step}" for i, step in enumerate(plan))
        task = plan[0]
        task_formatted = f"""For the following plan:
{plan_str}\n\nYou are tasked with executing step {1}, {task}."""
        agent_response = await agent_executor.ainvoke({"messages": [("user", task_formatted)]})
        return {"past_steps": [(task, agent_response["messages"][-1].content)]}

    async def plan_step(state: PlanExecute) -> dict[str, Any]:
        plan = await planner.ainvoke({"messages": [("user", state["input"])]})
        return {"plan": plan.steps}

    async def replan_step(state: PlanExecute) -> dict[str, Any]:
        output = await replanner.ainvoke(state)
        if isinstance(output.action, Response):
            return {"response": output.action.response}
        return {"plan": output.action.steps}

    def should_end(state: PlanExecute) -> str:
        if "response" in state and state["response"]:  # noqa: RUF019 (the tutorial's line)
            return END
        return "agent"

    workflow = StateGraph(PlanExecute)
    workflow.add_node("planner", plan_step)
    workflow.add_node("agent", execute_step)
    workflow.add_node("replan", replan_step)
    workflow.add_edge(START, "planner")
    workflow.add_edge("planner", "agent")
    workflow.add_edge("agent", "replan")
    workflow.add_conditional_edges("replan", should_end, ["agent", END])
    return workflow.compile()


async def run(app: Any, question: str, max_calls: int) -> dict[str, Any]:
    updates: list[dict[str, Any]] = []
    stopped = None
    print(f"objective: {question!r}")
    async with af.run("plan-and-execute", budget=Budget(max_calls=max_calls)) as r:
        try:
            config = {"recursion_limit": 50}
            async for event in app.astream({"input": question}, config=config):
                for node, update in event.items():
                    if node != "__end__":
                        print(f"  {node:<8} {update}")
                        updates.append({"node": node, "update": update})
        except af.BudgetExceededError as err:  # a replanner that never answers
            stopped = str(err)
            print(f"  stopped by the run's budget: {err}")
    print(r.report())
    print(
        f"totals: {r.totals.calls} model calls, {r.totals.cache_hits} cache hits, "
        f"{r.usage.prompt_tokens} prompt + {r.usage.completion_tokens} completion tokens, "
        f"${r.cost.total_usd:.8f}"
    )
    steps = {
        name: {
            "calls": s.calls,
            "cache_hits": s.totals.cache_hits,
            "tiers": sorted(s.tiers),
            "cost_usd": float(s.cost.total_usd),
        }
        for name, s in r.steps.items()
    }
    total = {"calls": r.totals.calls, "cost_usd": float(r.cost.total_usd)}
    return {
        "updates": updates,
        "searches": SEARCHES,
        "stopped": stopped,
        "steps": steps,
        "total": total,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-base", help="comma-separated base URLs of running replicas")
    parser.add_argument("--model", default="openai/smollm2-135m", help="litellm model name")
    parser.add_argument(
        "--question", default="what is the hometown of the mens 2024 Australia open winner?"
    )
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-calls", type=int, default=7, help="the run's budget")
    parser.add_argument("--json", help="also write the run's updates and rows to this file")
    args = parser.parse_args()

    with ExitStack() as stack:
        if args.api_base:
            bases = args.api_base.split(",")
        else:
            print("starting 2 SmolLM2-135M replicas with tool calls (serve_local, tools=True)")
            servers = stack.enter_context(serve_local("smollm2", replicas=2, threads=1, tools=True))
            bases = [s.base_url for s in servers]
        endpoints = [
            af.Endpoint(model=args.model, api_base=b, api_key="none", pricing=PRICING, timeout=120)
            for b in bases
        ]
        cache_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="plan-execute-"))
        af.configure(
            zoo=af.ModelZoo(tiers=[af.Tier("local", endpoints=endpoints)]), cache_dir=cache_dir
        )
        result = asyncio.run(run(build_app(args.max_tokens), args.question, args.max_calls))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
