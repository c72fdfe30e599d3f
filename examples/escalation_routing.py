"""Escalation and routing against real local models.

    python examples/escalation_routing.py           # starts SmolLM2-135M and Gemma 3 270M
    python examples/escalation_routing.py --small http://127.0.0.1:8081/v1=openai/smollm2-135m \
        --heavy http://127.0.0.1:8082/v1=openai/my-bigger-model

A two-tier zoo (``smollm2`` cheapest, then ``gemma3-270m``) answers a few quiz questions
three ways:

* ``arithmetic``: escalation. SmolLM2 answers first; ``all_of(verifier, logprob)`` says
  whether the answer ends in a number the model was sure of; if not, it climbs.
* ``fact``: ``tier="auto"`` with a kNN router trained on the shipped sample outcomes
  (``agentflow/routing/data/sample_outcomes.jsonl``), whose tiers have the same names.
* ``triage``: ``tier="auto"`` with a ``RuleRouter``: "explain"/"why" questions go to the
  heavier tier, the rest stay cheap.

It prints each answer with its tier, confidence and cost, then the run's report. With the
two tiny local models do not expect the heavier tier to be better: Gemma 3 270M is a base
model and does worse than SmolLM2 on such questions (see docs/escalation.md). Point
``--heavy`` at a real stronger endpoint to see escalation pay off.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from contextlib import ExitStack

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no price-map fetch

import agentflow as af
from agentflow import scorers
from agentflow.routing import SAMPLE_OUTCOMES, Rule, RuleRouter, read_outcomes, train_router
from budgets import GpuHourPricing

# the figures of benchmarks/build_routing_sample.py: a $1.10 GPU-hour, and Gemma 3 270M
# (twice SmolLM2's parameters) at half the throughput
PRICING = {
    "smollm2": GpuHourPricing(
        usd_per_gpu_hour="1.10", gpus=1, prompt_tokens_per_s=9000, output_tokens_per_s=350
    ),
    "gemma3-270m": GpuHourPricing(
        usd_per_gpu_hour="1.10", gpus=1, prompt_tokens_per_s=4500, output_tokens_per_s=175
    ),
}
SYSTEM = "Answer with a single word or number."


def ask(question: str) -> af.Completion:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    return af.complete(messages=messages, max_tokens=12, temperature=0.0)


def ends_in_a_number(c: af.Completion) -> bool:
    """A verifier: the answer ends with a number ("12", "7 + 5 = 12.")."""
    return re.search(r"-?\d+\.?$", c.text.strip()) is not None


@af.tool(
    tier="smollm2",
    escalate=af.Escalate(
        min_confidence=0.6,
        scorer=scorers.all_of(scorers.verifier(ends_in_a_number), scorers.logprob()),
    ),
)
def arithmetic(question: str) -> af.Completion:
    return ask(question)


# the router learns which tier got which kind of question right on the sample
fact_router = train_router(
    read_outcomes(SAMPLE_OUTCOMES).ordered(["smollm2", "gemma3-270m"]), "knn", threshold=0.5
)


@af.retrieve(tier="auto", router=fact_router)
def fact(question: str) -> af.Completion:
    return ask(question)


triage_router = RuleRouter([Rule("gemma3-270m", keywords=["explain", "why"])], default="smollm2")


@af.plan(tier="auto", router=triage_router)
def triage(question: str) -> af.Completion:
    return ask(question)


QUESTIONS = [
    (arithmetic, "What is 7 + 5?"),
    (arithmetic, "What is 23 + 19?"),
    (fact, "What is the capital of Italy?"),
    (fact, "How many legs does a cat have?"),
    (triage, "Why is the sky blue?"),
    (triage, "Name a color."),
]


def _endpoint(spec: str, name: str) -> af.Endpoint:
    api_base, _, model = spec.partition("=")
    return af.Endpoint(model=model, api_base=api_base, pricing=PRICING[name], timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", metavar="API_BASE=MODEL", help="a running cheap endpoint")
    parser.add_argument("--heavy", metavar="API_BASE=MODEL", help="a running stronger endpoint")
    args = parser.parse_args()

    with ExitStack() as stack:
        endpoints = {}
        for name, spec, local in (
            ("smollm2", args.small, "smollm2"),
            ("gemma3-270m", args.heavy, "gemma3-270m"),
        ):
            if spec is None:
                from agentflow.local import LlamaServer

                print(f"starting llama-server for {local} ...")
                server = stack.enter_context(LlamaServer(local, threads=1, parallel=1))
                spec = f"{server.base_url}=openai/{server.alias}"
            endpoints[name] = _endpoint(spec, name)
        af.configure(
            zoo=af.ModelZoo(tiers=[af.Tier(name, endpoints=[e]) for name, e in endpoints.items()])
        )

        with af.run("quiz") as run:
            results = [(step.__name__, q, step(q)) for step, q in QUESTIONS]

    print(f"\n{'step':<11} {'question':<32} {'tiers tried':<22} {'confidence':>10}  answer")
    for step, question, c in results:
        tiers = " -> ".join(a.tier for a in c.attempts)
        confidence = "-" if c.confidence is None else f"{c.confidence:.2f}"
        print(f"{step:<11} {question:<32} {tiers:<22} {confidence:>10}  {c.text.strip()!r}")
    print(f"\nrun cost ${run.cost.total_usd:.8f}\n")
    print(run.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
