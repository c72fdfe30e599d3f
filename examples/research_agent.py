"""A small research agent against real local llama-server replicas.

    python examples/research_agent.py            # starts two SmolLM2 replicas itself
    python examples/research_agent.py --api-base http://127.0.0.1:8081/v1 \
        --model openai/smollm2-135m

Four decorated steps — plan, retrieve (over the documents in examples/docs/), a tool call
and a verification — share one long system prompt, so the engine's prefix cache serves it
after the first call on each replica. The agent prints, per step: tier, endpoint, tokens
(cached share), latency and cost, then the run's totals and its report. Then the same
question is asked again: the plan and retrieval steps have the exact response cache, so
their answers come back from it at no cost and reach no replica.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import agentflow as af
import tracing
from budgets import Budget, GpuHourPricing

DOCS = Path(__file__).parent / "docs"

# An L4-class GPU; the throughputs are what a 135M model sustains there. On this CPU the
# real throughput is lower; measure yours to price it honestly (docs: budgets).
PRICING = GpuHourPricing(
    usd_per_gpu_hour=0.80, gpus=1, prompt_tokens_per_s=9000, output_tokens_per_s=350
)

SYSTEM = (
    "You are a careful research assistant for an engineering team that runs language "
    "models in production. You answer briefly and precisely, in plain English, and you "
    "never invent numbers: when a figure is needed you use the figures given to you. "
    "Cost matters to this team: inference, not training, is most of their bill, and every "
    "agent request becomes many model calls. Keep answers under three sentences.\n\n"
    "Background the team shares:\n" + "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")))
)


def ask(user: str, **params: Any) -> af.Completion:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    return af.complete(messages=messages, temperature=0.0, **params)


@af.plan(tier="specialist", budget=Budget(max_output_tokens=96), cache="exact")
def make_plan(question: str) -> str:
    return ask(
        f"List two short search queries that would help answer: {question}", max_tokens=48
    ).text


def _score(query: str, text: str) -> float:
    words = set(re.findall(r"[a-z]{4,}", query.lower()))
    found = re.findall(r"[a-z]{4,}", text.lower())
    return sum(1 for w in found if w in words) / math.sqrt(len(found) + 1)


@af.retrieve(tier="specialist", cache="exact")
def retrieve(question: str, plan: str) -> str:
    docs = {p.stem: p.read_text() for p in sorted(DOCS.glob("*.md"))}
    best = max(docs, key=lambda name: _score(question + " " + plan, docs[name]))
    summary = ask(
        f"Summarise in one sentence what the note '{best}' says about: {question}", max_tokens=48
    ).text
    return f"[{best}] {summary}"


def gpu_cost_per_mtok(usd_per_gpu_hour: float, tokens_per_s: float) -> float:
    """The tool: dollars per million output tokens of a GPU-hour-billed endpoint."""
    return usd_per_gpu_hour / (tokens_per_s * 3600) * 1_000_000


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "gpu_cost_per_mtok",
            "description": "Dollars per million output tokens for a GPU billed by the hour.",
            "parameters": {
                "type": "object",
                "properties": {
                    "usd_per_gpu_hour": {"type": "number"},
                    "tokens_per_s": {"type": "number"},
                },
                "required": ["usd_per_gpu_hour", "tokens_per_s"],
            },
        },
    }
]


@af.tool(tier="specialist")
def price_tool(usd_per_gpu_hour: float, tokens_per_s: float) -> str:
    c = ask(
        f"Call gpu_cost_per_mtok for a GPU at ${usd_per_gpu_hour}/hour that generates "
        f"{tokens_per_s} tokens per second.",
        tools=TOOLS,
        max_tokens=64,
    )
    args = {"usd_per_gpu_hour": usd_per_gpu_hour, "tokens_per_s": tokens_per_s}
    how = "the model did not call the tool; agentflow called it with the given figures"
    if c.tool_calls:
        try:
            args = json.loads(c.tool_calls[0]["function"]["arguments"])
            how = "the model called the tool"
        except (KeyError, ValueError):
            pass
    value = gpu_cost_per_mtok(float(args["usd_per_gpu_hour"]), float(args["tokens_per_s"]))
    return f"${value:.4f} per million output tokens ({how})"


@af.verify(tier="specialist")
def verify(question: str, answer: str) -> float:
    c = ask(
        f"Question: {question}\nAnswer: {answer}\nIs the answer relevant? Reply yes or no.",
        max_tokens=1,
        logprobs=True,
    )
    lps = c.logprobs or []
    return math.exp(lps[0]) if lps else 0.0


@af.step(kind="generic", tier="specialist")
def answer(question: str, context: str, tool_result: str) -> str:
    return ask(
        f"Using this note: {context}\nand this figure: {tool_result}\nAnswer: {question}",
        max_tokens=80,
    ).text


def _row(step: str, run: af.Run) -> str:
    attempts = [a for a in run.attempts if a.step == step]
    prompt = sum(a.usage.prompt_tokens for a in attempts)
    cached = sum(a.usage.cached_prompt_tokens for a in attempts)
    completion = sum(a.usage.completion_tokens for a in attempts)
    cost = sum(a.cost.total_usd for a in attempts)
    latency = sum(a.latency_s for a in attempts)
    tiers = ",".join(sorted({a.tier for a in attempts}))
    endpoints = ",".join(sorted({a.endpoint.rsplit(":", 1)[-1] for a in attempts}))
    if all(a.cache_hit for a in attempts):
        endpoints = "cache"
    share = f"{100 * cached / prompt:.0f}%" if prompt else "-"
    return (
        f"{step:<11} {tiers:<11} :{endpoints:<11} {prompt:>6} {share:>6} {completion:>5} "
        f"{latency:>7.2f}s  ${cost:.8f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-base", action="append", help="use running endpoints instead")
    parser.add_argument("--model", default=None, help="litellm model name with --api-base")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--jsonl", default="agentflow-spans.jsonl", help="span file")
    parser.add_argument("--question", default="How do prefix caches cut the cost of an agent?")
    args = parser.parse_args()

    providers = tracing.setup(project="research-agent", jsonl_path=args.jsonl)
    with ExitStack() as stack:
        if args.api_base:
            bases, model = args.api_base, args.model or "openai/smollm2-135m"
        else:
            from agentflow.local import serve_local

            t0 = time.perf_counter()
            print(f"starting {args.replicas} llama-server replicas of SmolLM2-135M ...")
            servers = stack.enter_context(serve_local("smollm2", replicas=args.replicas))
            bases, model = [s.base_url for s in servers], "openai/" + servers[0].alias
            print(f"ready in {time.perf_counter() - t0:.1f}s: {', '.join(bases)}")
        # a fresh response cache per demo run, so the first run below is never a replay
        cache_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="agentflow-demo-"))
        af.configure(
            cache_dir=cache_dir,
            zoo=af.ModelZoo(
                tiers=[
                    af.Tier(
                        "specialist",
                        endpoints=[
                            af.Endpoint(model=model, api_base=b, pricing=PRICING, timeout=120)
                            for b in bases
                        ],
                    )
                ]
            ),
        )

        question = args.question
        with af.run("research", budget=Budget(max_usd=0.01), user_id="demo") as run:
            plan = make_plan(question)
            context = retrieve(question, plan)
            figure = price_tool(2.50, 1500)
            final = answer(question, context, figure)
            confidence = verify(question, final)
        with af.run("research (asked again)", budget=Budget(max_usd=0.01), user_id="demo") as again:
            plan_again = make_plan(question)
            context_again = retrieve(question, plan_again)

    print(f"\nquestion:   {question}\nplan:       {plan.strip()}\nretrieved:  {context.strip()}")
    print(f"tool:       {figure}\nanswer:     {final.strip()}\nconfidence: {confidence:.2f}\n")
    print(
        f"{'step':<11} {'tier':<11} {'endpoint':<12} {'prompt':>6} {'cached':>6} "
        f"{'out':>5} {'latency':>8}  cost"
    )
    for step in run.steps:
        print(_row(step, run))
    t = run.totals
    share = 100 * t.usage.cached_prompt_tokens / max(1, t.usage.prompt_tokens)
    print(
        f"\nrun totals: {t.calls} calls, {t.usage.prompt_tokens} prompt tokens "
        f"({share:.0f}% cached), {t.usage.completion_tokens} completion tokens, "
        f"{t.latency_s:.2f}s in model calls, ${t.cost.total_usd:.8f}"
    )
    print("\n" + run.report())
    print(f"\nasked again: plan and retrieval from the response cache ({args.jsonl} has the hits)")
    for step in again.steps:
        print(_row(step, again))
    assert plan_again == plan
    assert context_again == context
    print("\n" + again.report())
    providers.shutdown()
    print(f"\nspans written to {args.jsonl}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
