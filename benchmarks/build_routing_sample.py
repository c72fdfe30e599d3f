"""Build agentflow/routing/data/sample_outcomes.jsonl: real answers of the local models.

    python benchmarks/build_routing_sample.py [--out PATH] [--limit N]

Starts llama-server for SmolLM2-135M-Instruct and Gemma 3 270M (``agentflow.local``),
asks 100 short questions with answers a program can check (arithmetic, simple facts,
yes/no) through ``af.complete``, and writes one JSONL row per (question, tier) with
``correct``, ``cost`` (agentflow's own GPU-hour pricing of the call's tokens),
``tokens``, ``confidence`` and the answer. The four tiers, as labelled in the file:

=================  ===============================================================
smollm2            SmolLM2-135M-Instruct, zero-shot, greedy
smollm2-fewshot    the same model with a 5-shot prompt, greedy (a longer prompt)
gemma3-270m        Gemma 3 270M, a *base* model, with the 5-shot prompt, greedy
smollm2-vote5      SmolLM2-135M again: 5 samples at temperature 0.7 with the 5-shot
                   prompt, majority answer (self-consistency; all 5 calls are paid)
=================  ===============================================================

Only two models: ``smollm2-fewshot`` and ``smollm2-vote5`` are the same SmolLM2 with
more prompt or more samples, not a stronger model. ``confidence`` is the ``logprob``
scorer (exp of the mean token logprob) for the greedy tiers and the vote share (the
``agreement`` scorer's measure) for ``smollm2-vote5``.

Pricing is fixed, so the file does not depend on how busy the machine was: a $1.10
GPU-hour at the throughput figures of docs (SmolLM2: 9000 prompt and 350 output tokens
per second); Gemma 3 270M has twice the parameters, so half of both. Cached prompt
tokens (the shared 5-shot prefix) skip prefill and cost nothing, as agentflow prices
them. Takes 4-8 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no price map fetch

import agentflow as af
from agentflow.local import LlamaServer
from agentflow.scorers import AgreementScorer, logprob
from budgets import GpuHourPricing

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "agentflow" / "routing" / "data" / "sample_outcomes.jsonl"

PRICING = {
    "smollm2": GpuHourPricing(
        usd_per_gpu_hour="1.10", gpus=1, prompt_tokens_per_s=9000, output_tokens_per_s=350
    ),
    "gemma3-270m": GpuHourPricing(
        usd_per_gpu_hour="1.10", gpus=1, prompt_tokens_per_s=4500, output_tokens_per_s=175
    ),
}
SYSTEM = "Answer with a single word or number."
SHOTS = [
    ("What is 3 + 4?", "7"),
    ("What is the capital of Norway?", "Oslo"),
    ("Is grass green?", "Yes"),
    ("How many wheels does a bicycle have?", "2"),
    ("Is 5 greater than 8?", "No"),
]
MAX_TOKENS = 10
VOTES = 5


@dataclass(frozen=True)
class Question:
    category: str  # arithmetic, fact, yes/no
    text: str
    answer: str  # alternatives separated by |


FACTS = [
    ("What is the capital of France?", "paris"),
    ("What is the capital of Japan?", "tokyo"),
    ("What is the capital of Italy?", "rome"),
    ("What is the capital of Germany?", "berlin"),
    ("What is the capital of Spain?", "madrid"),
    ("What is the capital of England?", "london"),
    ("What is the capital of Russia?", "moscow"),
    ("What is the capital of China?", "beijing"),
    ("What is the capital of Egypt?", "cairo"),
    ("What is the capital of Canada?", "ottawa"),
    ("What is the capital of Australia?", "canberra"),
    ("What is the capital of Greece?", "athens"),
    ("What is the capital of Portugal?", "lisbon"),
    ("What is the capital of Ireland?", "dublin"),
    ("What color is the sky on a clear day?", "blue"),
    ("What color is fresh grass?", "green"),
    ("What color is snow?", "white"),
    ("What color is a ripe banana?", "yellow"),
    ("What color is coal?", "black"),
    ("What color is a ripe tomato?", "red"),
    ("How many legs does a spider have?", "8|eight"),
    ("How many legs does a dog have?", "4|four"),
    ("How many legs does a bird have?", "2|two"),
    ("How many legs does an insect have?", "6|six"),
    ("How many days are in a week?", "7|seven"),
    ("How many months are in a year?", "12|twelve"),
    ("How many hours are in a day?", "24|twenty-four"),
    ("How many minutes are in an hour?", "60|sixty"),
    ("What is the opposite of hot?", "cold"),
    ("What is the opposite of up?", "down"),
    ("What is the opposite of big?", "small|little"),
    ("What is the largest planet in the solar system?", "jupiter"),
    ("Which planet do we live on?", "earth"),
    ("What do bees make?", "honey"),
    ("What is frozen water called?", "ice"),
    ("What animal says moo?", "cow|cows"),
]
YES_NO = [
    ("Is the sun hot?", "yes"),
    ("Can fish swim?", "yes"),
    ("Is ice hot?", "no"),
    ("Do cats bark?", "no"),
    ("Is 7 greater than 3?", "yes"),
    ("Is 2 greater than 9?", "no"),
    ("Is water wet?", "yes"),
    ("Can birds fly?", "yes"),
    ("Do fish have wings?", "no"),
    ("Is the moon made of cheese?", "no"),
    ("Is Paris in France?", "yes"),
    ("Is Tokyo in Brazil?", "no"),
    ("Is a dog an animal?", "yes"),
    ("Is a rock alive?", "no"),
    ("Is 10 an even number?", "yes"),
    ("Is 7 an even number?", "no"),
    ("Do humans need oxygen?", "yes"),
    ("Can a car fly?", "no"),
    ("Is snow cold?", "yes"),
    ("Is the sea salty?", "yes"),
    ("Do trees have roots?", "yes"),
    ("Is fire cold?", "no"),
    ("Is 100 less than 50?", "no"),
    ("Is a triangle round?", "no"),
]


def questions() -> list[Question]:
    """40 arithmetic questions (seeded), 36 facts and 24 yes/no questions."""
    rng = random.Random(7)
    out: list[Question] = []
    seen: set[str] = set()

    def add(category: str, text: str, answer: str) -> None:
        if text not in seen:
            seen.add(text)
            out.append(Question(category, text, answer))

    while len(out) < 14:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        add("arithmetic", f"What is {a} + {b}?", str(a + b))
    while len(out) < 24:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        add("arithmetic", f"What is {a} times {b}?", str(a * b))
    while len(out) < 32:
        a, b = rng.randint(10, 20), rng.randint(1, 9)
        add("arithmetic", f"What is {a} minus {b}?", str(a - b))
    while len(out) < 40:
        a, b = rng.randint(11, 49), rng.randint(11, 49)
        add("arithmetic", f"What is {a} + {b}?", str(a + b))
    out += [Question("fact", q, a) for q, a in FACTS]
    out += [Question("yes/no", q, a) for q, a in YES_NO]
    return out


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?")


def is_correct(question: Question, reply: str) -> bool:
    """Arithmetic: the numbers of the reply that are not in the question are exactly the
    answer ("7 + 5 = 12" is right, "12 or 13" is not). Yes/no: the first yes or no.
    Facts: one of the accepted words appears."""
    text = (reply or "").lower().replace(",", "")
    if question.category == "arithmetic":
        new = set(_NUMBER.findall(text)) - set(_NUMBER.findall(question.text))
        return new == {question.answer}
    if question.category == "yes/no":
        for word in _WORD.findall(text):
            if word in ("yes", "no"):
                return word == question.answer
        return False
    words = set(_WORD.findall(text)) | set(_NUMBER.findall(text))
    return any(alt in words for alt in question.answer.split("|"))


def messages(question: Question, few_shot: bool) -> list[dict[str, str]]:
    out = [{"role": "system", "content": SYSTEM}]
    if few_shot:
        for q, a in SHOTS:
            out += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return [*out, {"role": "user", "content": question.text}]


def row(
    question: Question, tier: str, answer: str, cost: float, tokens: int, confidence: float | None
) -> dict[str, Any]:
    return {
        "prompt": question.text,
        "tier": tier,
        "correct": is_correct(question, answer),
        "cost": cost,
        "tokens": tokens,
        "confidence": None if confidence is None else round(confidence, 6),
        "category": question.category,
        "expected": question.answer,
        "answer": answer,
    }


def greedy(question: Question, zoo_tier: str, tier: str, few_shot: bool) -> dict[str, Any]:
    c = af.complete(
        messages(question, few_shot),
        tier=zoo_tier,
        max_tokens=MAX_TOKENS,
        temperature=0.0,
        logprobs=True,
    )
    tokens = c.usage.prompt_tokens + c.usage.completion_tokens
    return row(question, tier, c.text, float(c.cost.total_usd), tokens, logprob()(c))


_vote = AgreementScorer(n=VOTES, normalize="text")


def vote(question: Question) -> dict[str, Any]:
    replies = [
        af.complete(
            messages(question, True), tier="smollm2", max_tokens=MAX_TOKENS, temperature=0.7
        )
        for _ in range(VOTES)
    ]
    counts = collections.Counter(_vote.normalizer(r.text) for r in replies)
    best = max(replies, key=lambda r: counts[_vote.normalizer(r.text)])  # first of the mode
    others = [r.text for r in replies if r is not best]
    cost = sum(float(r.cost.total_usd) for r in replies)
    tokens = sum(r.usage.prompt_tokens + r.usage.completion_tokens for r in replies)
    return row(
        question, "smollm2-vote5", best.text, cost, tokens, _vote.agreement(best.text, others)
    )


TIERS: dict[str, Callable[[Question], dict[str, Any]]] = {
    "smollm2": lambda q: greedy(q, "smollm2", "smollm2", few_shot=False),
    "smollm2-fewshot": lambda q: greedy(q, "smollm2", "smollm2-fewshot", few_shot=True),
    "gemma3-270m": lambda q: greedy(q, "gemma3-270m", "gemma3-270m", few_shot=True),
    "smollm2-vote5": vote,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    args = parser.parse_args(argv)
    qs = questions()[: args.limit]
    t0 = time.monotonic()
    with (
        LlamaServer("smollm2", threads=1, parallel=1, ctx_size=2048) as small,
        LlamaServer("gemma3-270m", threads=1, parallel=1, ctx_size=2048) as gemma,
    ):

        def endpoint(server: LlamaServer, name: str) -> af.Endpoint:
            return af.Endpoint(
                model="openai/" + server.alias,
                api_base=server.base_url,
                api_key="none",
                pricing=PRICING[name],
                timeout=120,
            )

        af.configure(
            zoo=af.ModelZoo(
                tiers=[
                    af.Tier("smollm2", endpoints=[endpoint(small, "smollm2")]),
                    af.Tier("gemma3-270m", endpoints=[endpoint(gemma, "gemma3-270m")]),
                ]
            )
        )
        results: dict[tuple[int, str], dict[str, Any]] = {}

        def run(tiers: list[str]) -> None:
            for i, q in enumerate(qs):
                for tier in tiers:
                    results[i, tier] = TIERS[tier](q)

        # the two servers have a core each: Gemma's tier runs beside SmolLM2's three
        worker = threading.Thread(target=run, args=(["gemma3-270m"],))
        worker.start()
        run(["smollm2", "smollm2-fewshot", "smollm2-vote5"])
        worker.join()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for i in range(len(qs)):
            for tier in TIERS:
                f.write(json.dumps(results[i, tier], ensure_ascii=False) + "\n")
    elapsed = time.monotonic() - t0
    print(f"wrote {len(results)} rows ({len(qs)} questions × {len(TIERS)} tiers) to {args.out}")
    for tier in TIERS:
        rows = [results[i, tier] for i in range(len(qs))]
        right = sum(r["correct"] for r in rows)
        usd = sum(r["cost"] for r in rows) / len(rows)
        print(f"  {tier:<16} {right:>3}/{len(rows)} correct   ${usd:.3g} per question")
    print(f"in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
