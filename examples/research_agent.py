"""A small research agent against real local llama-server replicas.

    python examples/research_agent.py            # starts two SmolLM2 replicas itself
    python examples/research_agent.py --api-base http://127.0.0.1:8081/v1 \
        --model openai/smollm2-135m

Four decorated steps — plan, retrieve (over the documents in examples/docs/), a tool call
and a verification — share one long system prompt, so the engine's prefix cache serves it
after the first call on each replica. Then the same question is asked again: the plan and
retrieval steps have the exact response cache, so their answers come back from it at no
cost and reach no replica.

It prints one table: per step, the tier, endpoint, tokens (cached share), latency, cost,
and what the engine's prefix cache and the response cache saved, in dollars.

Pricing. The replicas are priced by the hour, at the throughput measured on this machine
(``agentflow.cli.calibrate``, the code behind ``agentflow calibrate``): the first run
measures it (about half a minute) and keeps the figures in the agentflow cache directory;
``--recalibrate`` measures again. The hourly price is an assumption, $0.80 (an L4-class
cloud GPU), printed with the table; ``--usd-per-hour`` sets yours. ``--assume-l4`` skips
the measurement and prices at an L4's throughput instead, and says so.

The run's spans go to ``$AGENTFLOW_CACHE_DIR/research-agent/spans.jsonl``
(``~/.cache/agentflow`` by default), outside the repository, replacing the previous run's;
``--jsonl`` appends them to a file of yours instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import agentflow as af
import tracing
from budgets import Budget, GpuHourPricing, Pricing, Usage

DOCS = Path(__file__).parent / "docs"
USD_PER_HOUR = "0.80"  # assumed: what an L4-class cloud GPU rents for
# what a 135M model sustains on an L4 (assumed, not measured): --assume-l4
L4_PROMPT_TOKENS_PER_S, L4_OUTPUT_TOKENS_PER_S = 9000, 350
# the measurement: sequential requests (concurrency 1), as the agent makes its calls
CALIBRATION = {"concurrency": 1, "requests": 4, "prompt_tokens": 512, "max_tokens": 48}

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
    completion: af.Completion = af.complete(messages=messages, temperature=0.0, **params)
    return completion


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


def _cache_dir() -> Path:
    return Path(os.environ.get("AGENTFLOW_CACHE_DIR") or "~/.cache/agentflow").expanduser()


@dataclass(frozen=True)
class Priced:
    """The replicas' pricing and the sentence that says where its figures come from."""

    pricing: GpuHourPricing
    source: str
    measured: bool


def _pricing(args: argparse.Namespace, api_base: str, model: str) -> Priced:
    """Price at the throughput measured on this machine (kept between runs), or at an
    L4's with ``--assume-l4``; the hourly price is always an assumption."""
    usd = Decimal(args.usd_per_hour)
    hourly = (
        f"${usd}/hour per replica ({'assumed' if args.usd_per_hour == USD_PER_HOUR else 'given'})"
    )
    if args.assume_l4:
        pricing = GpuHourPricing(
            usd_per_gpu_hour=usd,
            prompt_tokens_per_s=L4_PROMPT_TOKENS_PER_S,
            output_tokens_per_s=L4_OUTPUT_TOKENS_PER_S,
        )
        source = (
            f"{hourly} at an L4's throughput for a 135M model, ASSUMED, not measured: "
            f"{L4_PROMPT_TOKENS_PER_S} prompt and {L4_OUTPUT_TOKENS_PER_S} output tokens/s"
        )
        return Priced(pricing, source, measured=False)
    host = f"{platform.node()}-{os.cpu_count()}cpu"
    where = "local" if args.api_base is None else api_base
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model}@{where}@{host}")
    path = _cache_dir() / "research-agent" / f"calibration-{key}.json"
    if args.recalibrate or not path.exists():
        from agentflow.cli._calibrate import calibrate

        print(f"measuring {model}'s throughput on this machine (agentflow calibrate) ...")
        cal = calibrate(
            api_base,
            model.removeprefix("openai/"),
            usd_per_gpu_hour=usd,
            concurrency=CALIBRATION["concurrency"],
            requests=CALIBRATION["requests"],
            prompt_tokens=CALIBRATION["prompt_tokens"],
            max_tokens=CALIBRATION["max_tokens"],
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        measured = {
            "prompt_tokens_per_s": str(cal.prompt_tokens_per_s),
            "output_tokens_per_s": str(cal.output_tokens_per_s),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **CALIBRATION,
        }
        path.write_text(json.dumps(measured, indent=2), encoding="utf-8")
    measured = json.loads(path.read_text(encoding="utf-8"))
    pricing = GpuHourPricing(
        usd_per_gpu_hour=usd,
        prompt_tokens_per_s=measured["prompt_tokens_per_s"],
        output_tokens_per_s=measured["output_tokens_per_s"],
    )
    source = (
        f"{hourly} at the throughput measured on this machine on {measured['measured_at']}: "
        f"{measured['prompt_tokens_per_s']} prompt and {measured['output_tokens_per_s']} "
        f"output tokens/s (one request at a time; kept in {path}, --recalibrate to redo)"
    )
    return Priced(pricing, source, measured=True)


def prefix_saved(pricing: Pricing, usage: Usage) -> Decimal:
    """What the engine's prefix cache saved: the cached prompt tokens priced at the
    uncached rate, minus what they cost."""
    cached = usage.cached_prompt_tokens
    if not cached:
        return Decimal(0)
    uncached = pricing.cost(Usage(cached, 0, 0)).input_usd
    return uncached - pricing.cost(Usage(cached, cached, 0)).cached_input_usd


def _step_row(label: str, attempts: list[af.Attempt], pricing: Pricing) -> dict[str, Any]:
    prompt = sum(a.usage.prompt_tokens for a in attempts)
    cached = sum(a.usage.cached_prompt_tokens for a in attempts)
    endpoints = sorted({a.endpoint.rsplit(":", 1)[-1] for a in attempts})
    return {
        "step": label,
        "tier": ",".join(sorted({a.tier for a in attempts})),
        "endpoint": "cache" if all(a.cache_hit for a in attempts) else ",".join(endpoints),
        "prompt_tokens": prompt,
        "cached_prompt_tokens": cached,
        "completion_tokens": sum(a.usage.completion_tokens for a in attempts),
        "latency_s": sum(a.latency_s for a in attempts),
        "usd": sum((a.cost.total_usd for a in attempts), Decimal(0)),
        "prefix_saved_usd": sum((prefix_saved(pricing, a.usage) for a in attempts), Decimal(0)),
        "cache_saved_usd": sum((a.saved_usd for a in attempts), Decimal(0)),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    header = (
        "step",
        "tier",
        "endpoint",
        "prompt",
        "cached",
        "out",
        "latency",
        "cost $",
        "prefix-cache saved $",
        "response-cache saved $",
    )
    body = [
        (
            r["step"],
            r["tier"],
            r["endpoint"],
            str(r["prompt_tokens"]),
            f"{100 * r['cached_prompt_tokens'] / r['prompt_tokens']:.0f}%"
            if r["prompt_tokens"]
            else "-",
            str(r["completion_tokens"]),
            f"{r['latency_s']:.2f}s",
            f"{r['usd']:.8f}",
            f"{r['prefix_saved_usd']:.8f}",
            f"{r['cache_saved_usd']:.8f}",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        left = [c.ljust(w) for c, w in zip(cells[:3], widths[:3], strict=True)]
        right = [c.rjust(w) for c, w in zip(cells[3:], widths[3:], strict=True)]
        return "  ".join(left + right).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(b) for b in body[:-1]), rule, line(body[-1])])


def _rows(runs: list[tuple[af.Run, str]], pricing: Pricing) -> list[dict[str, Any]]:
    rows = []
    everything: list[af.Attempt] = []
    for run, suffix in runs:
        for step in run.steps:
            attempts = [a for a in run.attempts if a.step == step]
            everything += attempts
            rows.append(_step_row(step + suffix, attempts, pricing))
    total = _step_row("total", everything, pricing)
    total["tier"] = total["endpoint"] = ""
    return [*rows, total]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-base", action="append", help="use running endpoints instead")
    parser.add_argument("--model", default=None, help="litellm model name with --api-base")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument(
        "--jsonl",
        default=None,
        help="span file (default: $AGENTFLOW_CACHE_DIR/research-agent/spans.jsonl)",
    )
    parser.add_argument("--question", default="How do prefix caches cut the cost of an agent?")
    parser.add_argument("--usd-per-hour", default=USD_PER_HOUR, help="what a replica costs")
    parser.add_argument("--recalibrate", action="store_true", help="measure throughput again")
    parser.add_argument(
        "--assume-l4", action="store_true", help="price at an L4's throughput, unmeasured"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = parser.parse_args()
    jsonl = Path(args.jsonl or _cache_dir() / "research-agent" / "spans.jsonl").expanduser()
    if args.jsonl is None:  # the demo's own file holds its last run: its replicas only
        jsonl.unlink(missing_ok=True)

    providers = tracing.setup(project="research-agent", jsonl_path=jsonl)
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
        priced = _pricing(args, bases[0], model)
        # a fresh response cache per demo run, so the first run below is never a replay
        cache_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="agentflow-demo-"))
        af.configure(
            cache_dir=cache_dir,
            zoo=af.ModelZoo(
                tiers=[
                    af.Tier(
                        "specialist",
                        endpoints=[
                            af.Endpoint(
                                model=model, api_base=b, pricing=priced.pricing, timeout=120
                            )
                            for b in bases
                        ],
                    )
                ]
            ),
        )

        question = args.question
        started = datetime.now(UTC)
        with af.run("research", budget=Budget(max_usd=0.05), user_id="demo") as run:
            plan = make_plan(question)
            context = retrieve(question, plan)
            figure = price_tool(2.50, 1500)
            final = answer(question, context, figure)
            confidence = verify(question, final)
        with af.run("research (asked again)", budget=Budget(max_usd=0.05), user_id="demo") as again:
            plan_again = make_plan(question)
            context_again = retrieve(question, plan_again)
    assert plan_again == plan
    assert context_again == context
    providers.shutdown()

    print(f"\nquestion:   {question}\nplan:       {plan.strip()}\nretrieved:  {context.strip()}")
    print(f"tool:       {figure}\nanswer:     {final.strip()}\nconfidence: {confidence:.2f}\n")
    rows = _rows([(run, ""), (again, " (again)")], priced.pricing)
    print(_table(rows))
    total = rows[-1]
    paid_for_prompts = total["prefix_saved_usd"] + sum(
        (a.cost.input_usd + a.cost.cached_input_usd for a in run.attempts + again.attempts),
        Decimal(0),
    )
    share = total["prefix_saved_usd"] / paid_for_prompts if paid_for_prompts else Decimal(0)
    print(
        f"\npricing: {priced.source}\n"
        f"prefix cache: {total['cached_prompt_tokens']} of {total['prompt_tokens']} prompt "
        f"tokens came from the engine's cache, saving ${total['prefix_saved_usd']:.8f} "
        f"({share:.0%} of what the prompts would have cost)\n"
        f"response cache: the second run's {len(again.steps)} steps were answered from it, "
        f"saving ${total['cache_saved_usd']:.8f}\n"
        f"spans: {jsonl}; see them with\n"
        f"  agentflow report {jsonl}"
        + ("" if args.jsonl is None else f" --since {started.isoformat(timespec='seconds')}")
    )
    if args.json:
        figures = {
            "pricing": {
                "source": priced.source,
                "measured": priced.measured,
                "usd_per_gpu_hour": str(priced.pricing.usd_per_gpu_hour),
                "prompt_tokens_per_s": str(priced.pricing.prompt_tokens_per_s),
                "output_tokens_per_s": str(priced.pricing.output_tokens_per_s),
            },
            "rows": [
                {k: str(v) if isinstance(v, Decimal) else v for k, v in r.items()} for r in rows
            ],
            "spans": str(jsonl),
            "since": started.isoformat(),
        }
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
