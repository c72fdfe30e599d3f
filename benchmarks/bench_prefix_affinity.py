"""Prefix affinity vs round-robin over two real llama-server replicas, side by side.

One workload, run twice in one process: agents with long system prompts (each its own),
runs of 2-4 calls each, three runs under way at once so their calls interleave (as
concurrent sessions reach a shared pool), each call a different user question. Mode
"affinity" is ``@af.step(prefix_cache=True)`` (the default: each system prompt pinned to
one replica by rendezvous hashing); mode "round-robin" is ``prefix_cache=False``.

Fair by construction: the same calls in the same order, calls one at a time, and every
mode gets two *fresh* replicas (empty KV and prompt caches) and the same warm-up (one
short unrelated request per replica, so model loading is not timed). Replicas are
``serve_local`` with LlamaServer's defaults (``--ctx-size 4096 --parallel 2 --threads 1
--metrics --jinja``; one thread each on a 2-core machine) and the binary's own prompt
cache defaults (``--cache-ram 8192`` MiB of host RAM, idle slots saved to it,
``--cache-reuse 0``). With that RAM cache a replica keeps every prompt it has seen, so
round-robin pays one cold prefill per prefix *per replica* and affinity one per prefix;
``--cache-ram 0`` leaves only the 2 slots' KV per replica (a GPU's tight KV memory).

Prompt processing time is llama-server's own ``timings.prompt_ms`` (litellm keeps the
engine's ``timings`` on the response: ``completion.raw.timings``); wall time is the
client's. Everything binds 127.0.0.1 and the replicas are stopped at the end.

    python benchmarks/bench_prefix_affinity.py [--agents 4] [--runs 2] [--seed 7]
        [--max-tokens 8] [--cache-ram MIB]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: before litellm

import agentflow as af
from agentflow.local import LlamaServer, serve_local

MODES = ("affinity", "round-robin")
TOPICS = ("refunds", "late fees", "discounts", "currencies", "audits", "disputes", "taxes")
COLD_TOKENS = 100  # a call that computed more prompt tokens than this missed its prefix


@dataclass
class Call:
    agent: int
    question: str


@dataclass
class ModeResult:
    mode: str
    wall_s: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    prompt_ms: float = 0.0
    latency_s: float = 0.0
    cold: int = 0
    calls: int = 0
    sizes: list[int] = field(default_factory=list)
    timings_missing: int = 0
    placement: dict[int, Counter[str]] = field(default_factory=dict)


def system_prompt(agent: int) -> str:
    """Agent ``agent``'s own long system prompt (about 700-900 tokens for SmolLM2)."""
    rules = 26 + 3 * (agent % 4)
    role = ("invoicing", "support", "compliance", "procurement", "payroll", "treasury")[agent % 6]
    lines = [f"You are agent {agent}, the {role} assistant of a mid-size company."]
    lines += [
        f"Rule {agent}.{i}: for {TOPICS[(agent + i) % len(TOPICS)]}, quote policy "
        f"{agent * 100 + i}, keep the answer to one short sentence, never guess."
        for i in range(rules)
    ]
    return "\n".join(lines)


def workload(agents: int, runs: int, seed: int, active: int = 3) -> list[Call]:
    """``runs`` runs per agent of 2-4 calls each; ``active`` runs are under way at once
    and their calls interleave, as concurrent sessions' calls reach a shared pool."""
    rng = random.Random(seed)
    pending: list[list[Call]] = []
    n = 0
    for agent in range(agents):
        for _ in range(runs):
            run = []
            for _ in range(rng.randint(2, 4)):
                topic = rng.choice(TOPICS)
                run.append(Call(agent, f"Question {n}: what does policy say about {topic}?"))
                n += 1
            pending.append(run)
    rng.shuffle(pending)
    calls: list[Call] = []
    under_way: list[list[Call]] = []
    while pending or under_way:
        while pending and len(under_way) < active:
            under_way.append(pending.pop())
        run = rng.choice(under_way)
        calls.append(run.pop(0))
        if not run:
            under_way.remove(run)
    return calls


def warm_up(servers: list[LlamaServer]) -> None:
    """One short unrelated request per replica: the model is loaded and run once."""
    body = json.dumps(
        {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2}
    ).encode()
    for s in servers:
        request = urllib.request.Request(
            f"{s.base_url}/chat/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()


def run_mode(mode: str, calls: list[Call], args: argparse.Namespace) -> ModeResult:
    extra = ["--cache-ram", str(args.cache_ram)] if args.cache_ram is not None else []
    result = ModeResult(mode)
    with serve_local(
        "smollm2", replicas=2, threads=1, parallel=2, ctx_size=4096, extra_args=extra
    ) as servers:
        warm_up(servers)
        model = "openai/" + servers[0].alias
        zoo = af.ModelZoo(
            tiers=[
                af.Tier(
                    "local",
                    endpoints=[
                        # named replicas: the agents' placement does not depend on ports
                        af.Endpoint(
                            model=model, api_base=s.base_url, name=f"replica-{i}", timeout=300
                        )
                        for i, s in enumerate(servers)
                    ],
                )
            ]
        )
        af.configure(zoo=zoo)

        @af.step(name=f"agent-{mode}", tier="local", prefix_cache=mode == "affinity")
        def agent_call(call: Call) -> af.Completion:
            return af.complete(
                [
                    {"role": "system", "content": system_prompt(call.agent)},
                    {"role": "user", "content": call.question},
                ],
                max_tokens=args.max_tokens,
                temperature=0.0,
            )

        t0 = time.perf_counter()
        for call in calls:
            c = agent_call(call)
            result.calls += 1
            result.sizes.append(c.usage.prompt_tokens)
            result.prompt_tokens += c.usage.prompt_tokens
            result.cached_tokens += c.usage.cached_prompt_tokens
            result.latency_s += c.latency_s
            result.placement.setdefault(call.agent, Counter())[c.endpoint] += 1
            timings = getattr(c.raw, "timings", None)
            if isinstance(timings, dict) and "prompt_ms" in timings:
                result.prompt_ms += float(timings["prompt_ms"])
                result.cold += int(timings.get("prompt_n", 0) > COLD_TOKENS)
            else:
                result.timings_missing += 1
                computed = c.usage.prompt_tokens - c.usage.cached_prompt_tokens
                result.cold += int(computed > COLD_TOKENS)
        result.wall_s = time.perf_counter() - t0
    return result


def _placement(r: ModeResult) -> str:
    parts = []
    for agent in sorted(r.placement):
        counts = r.placement[agent]
        where = "+".join(f"{e.removeprefix('replica-')}×{n}" for e, n in sorted(counts.items()))
        parts.append(f"a{agent}→{where}")
    return "  ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2, help="runs per agent (2-4 calls each)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument(
        "--cache-ram",
        type=int,
        default=None,
        help="llama-server --cache-ram MiB (default: its own)",
    )
    args = parser.parse_args()
    calls = workload(args.agents, args.runs, args.seed)

    print("prefix affinity vs round-robin: 2 × llama-server smollm2-135m, fresh per mode")
    print(
        "replica flags: --ctx-size 4096 --parallel 2 --threads 1 --metrics --jinja"
        + (
            f" --cache-ram {args.cache_ram}"
            if args.cache_ram is not None
            else " (prompt cache: binary default --cache-ram 8192 MiB, --cache-reuse 0)"
        )
    )
    print(
        f"workload: {args.agents} agents, {len(calls)} calls in {args.agents * args.runs} runs "
        f"of 2-4 calls, 3 runs under way at once (seed {args.seed}), calls one at a time, "
        f"max_tokens={args.max_tokens}, temperature 0"
    )
    results = []
    for mode in MODES:
        r = run_mode(mode, calls, args)
        results.append(r)
        print(f"  {mode:<11} placement (agent→replica×calls): {_placement(r)}", flush=True)

    print()
    header = (
        f"{'mode':<12}{'calls':>6}{'prompt tok':>12}{'cached tok':>12}{'cached %':>10}"
        f"{'cold':>6}{'prompt_ms':>11}{'latency s':>11}{'wall s':>9}"
    )
    print(header)
    for r in results:
        share = 100.0 * r.cached_tokens / r.prompt_tokens if r.prompt_tokens else 0.0
        print(
            f"{r.mode:<12}{r.calls:>6}{r.prompt_tokens:>12}{r.cached_tokens:>12}{share:>9.1f}%"
            f"{r.cold:>6}{r.prompt_ms:>11.0f}{r.latency_s:>11.2f}{r.wall_s:>9.2f}"
        )
    aff, rr = results
    print(f"prompt sizes (engine tokens): {min(aff.sizes)}-{max(aff.sizes)} per call")
    uncached_aff = aff.prompt_tokens - aff.cached_tokens
    uncached_rr = rr.prompt_tokens - rr.cached_tokens
    print()
    print(
        "round-robin / affinity: "
        f"prompt processing {rr.prompt_ms / aff.prompt_ms:.2f}×, "
        f"uncached prompt tokens {uncached_rr / max(uncached_aff, 1):.2f}×, "
        f"wall time {rr.wall_s / aff.wall_s:.2f}×"
    )
    if aff.timings_missing or rr.timings_missing:
        print(
            "note: the engine's timings were missing on some responses; cold calls there "
            "were judged from usage, and prompt_ms undercounts them"
        )
    print(
        "cold = calls that computed more than "
        f"{COLD_TOKENS} prompt tokens (missed their system prompt)"
    )


if __name__ == "__main__":
    sys.exit(main())
