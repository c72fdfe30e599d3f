"""Routing over two real llama-server replicas under a skewed workload: prefix affinity,
engine-reported load, both (bounded-load consistent hashing), and litellm's Router.

The workload: ``--agents`` agents, each with its own long system prompt; agent 0 is hot
and makes ``--hot`` of the calls, the others share the rest. ``--calls`` calls in one
seeded order, ``--concurrency`` at a time under asyncio. Every mode gets two *fresh*
replicas (``serve_local("smollm2", replicas=2, threads=1, parallel=2)``, so 2 slots
each; ``--metrics`` on) and the same warm-up, and runs the same calls in the same order:

- ``affinity-only``: each prefix pinned to its rendezvous replica, no load guard;
- ``load-only``: the replica with the least load (the engine's running + waiting, or
  this process's in-flight count when higher), prefixes ignored;
- ``combined``: agentflow's router: affinity, spilling to the next replica in the
  prefix's order while its own is saturated (``engine_load`` polling every 0.1 s);
- ``litellm simple-shuffle`` / ``litellm least-busy``: ``litellm.Router`` over the same
  two replicas.

Cached-prompt share is the engines' own ``prompt_tokens_details.cached_tokens`` over
prompt tokens; latency is the client's wall time per call.

    python benchmarks/bench_fleet_routing.py [--calls 80] [--agents 6] [--hot 0.6]
        [--concurrency 4] [--max-tokens 8] [--seed 3] [--modes combined,affinity-only]
        [--cache-ram MIB]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: before litellm

import agentflow as af
from agentflow._zoo import Endpoint, Tier
from agentflow.local import LlamaServer, serve_local
from agentflow.pipeline import route
from agentflow.pipeline.load import engine_load
from agentflow.testing import reset_state

MODES = ("affinity-only", "load-only", "combined", "litellm simple-shuffle", "litellm least-busy")
TOPICS = ("refunds", "late fees", "discounts", "currencies", "audits", "disputes", "taxes")


@dataclass
class Result:
    mode: str
    latencies: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    hot_on: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0


def system_prompt(agent: int) -> str:
    """Agent ``agent``'s own system prompt (about 400 tokens for SmolLM2)."""
    lines = [f"You are agent {agent}, an assistant of a mid-size company."]
    lines += [
        f"Rule {agent}.{i}: for {TOPICS[(agent + i) % len(TOPICS)]}, quote policy "
        f"{agent * 100 + i}, answer in one short sentence."
        for i in range(14)
    ]
    return "\n".join(lines)


def workload(calls: int, agents: int, hot: float, seed: int) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    out = []
    for n in range(calls):
        agent = 0 if rng.random() < hot else rng.randint(1, agents - 1)
        out.append((agent, f"Question {n}: what is the rule on {rng.choice(TOPICS)}?"))
    return out


def messages(agent: int, question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": system_prompt(agent)},
        {"role": "user", "content": question},
    ]


def warm_up(servers: list[LlamaServer]) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "Hi."}], "max_tokens": 2})
    for s in servers:
        request = urllib.request.Request(
            f"{s.base_url}/chat/completions", body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()


# -- the two baseline orders (agentflow's own is route._ordered) ---------------------------
_turn = itertools.count()


def _affinity_only(tier: Tier, key: str | None) -> list[Endpoint]:
    return route.rendezvous(key or "", list(tier.endpoints))


def _load_only(tier: Tier, key: str | None) -> list[Endpoint]:
    eps = list(tier.endpoints)
    start = next(_turn) % len(eps)
    eps = eps[start:] + eps[:start]  # ties take turns

    def load(e: Endpoint) -> float:
        reading = engine_load.get(e.id)
        own = float(route.inflight.count(e.id))
        return own if reading is None else max(own, reading.load)

    engine_load.watch(eps)
    return sorted(eps, key=load)


async def _run(
    calls: list[tuple[int, str]],
    concurrency: int,
    one: Callable[[int, str], Awaitable[tuple[str, int, int]]],
    result: Result,
) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def timed(agent: int, question: str) -> None:
        async with gate:
            t0 = time.perf_counter()
            where, prompt, cached = await one(agent, question)
            result.latencies.append(time.perf_counter() - t0)
            result.prompt_tokens += prompt
            result.cached_tokens += cached
            if agent == 0:
                result.hot_on[where] = result.hot_on.get(where, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(timed(a, q) for a, q in calls))
    result.wall_s = time.perf_counter() - t0


async def run_mode(mode: str, calls: list[tuple[int, str]], args: argparse.Namespace) -> Result:
    result = Result(mode)
    reset_state()
    original = route._ordered
    extra = ["--cache-ram", str(args.cache_ram)] if args.cache_ram is not None else []
    with serve_local(
        "smollm2", replicas=2, threads=1, parallel=2, ctx_size=4096, extra_args=extra
    ) as servers:
        warm_up(servers)
        model = "openai/" + servers[0].alias
        if mode.startswith("litellm"):
            from litellm.router import Router

            router = Router(
                model_list=[
                    {
                        "model_name": "pool",
                        "litellm_params": {"model": model, "api_base": s.base_url, "api_key": "x"},
                        "model_info": {"id": f"replica-{i}"},
                    }
                    for i, s in enumerate(servers)
                ],
                routing_strategy=mode.removeprefix("litellm "),
                num_retries=0,
            )

            async def one(agent: int, question: str) -> tuple[str, int, int]:
                r: Any = await router.acompletion(
                    model="pool", messages=messages(agent, question), max_tokens=args.max_tokens
                )
                details = getattr(r.usage, "prompt_tokens_details", None)
                cached = int(getattr(details, "cached_tokens", 0) or 0)
                where = str((r._hidden_params or {}).get("model_id", "?"))
                return where, int(r.usage.prompt_tokens), cached

            await _run(calls, args.concurrency, one, result)
            return result

        eps = [
            af.Endpoint(model=model, api_base=s.base_url, name=f"replica-{i}", timeout=300)
            for i, s in enumerate(servers)
        ]
        af.configure(zoo=af.ModelZoo(tiers=[af.Tier("local", endpoints=eps)]))
        if mode != "affinity-only":
            engine_load.start(interval=0.1)
        route._ordered = {"affinity-only": _affinity_only, "load-only": _load_only}.get(
            mode, original
        )
        try:

            async def one(agent: int, question: str) -> tuple[str, int, int]:
                c = await af.acomplete(messages(agent, question), max_tokens=args.max_tokens)
                return c.endpoint, c.usage.prompt_tokens, c.usage.cached_prompt_tokens

            await _run(calls, args.concurrency, one, result)
        finally:
            route._ordered = original
            engine_load.reset()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=80)
    parser.add_argument("--agents", type=int, default=6)
    parser.add_argument("--hot", type=float, default=0.6, help="share of calls by agent 0")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--cache-ram",
        type=int,
        default=None,
        help="llama-server --cache-ram MiB (default: its own, 8192: every prompt it saw; "
        "0: only its 2 slots' KV, like a GPU's tight KV memory)",
    )
    args = parser.parse_args()
    calls = workload(args.calls, args.agents, args.hot, args.seed)
    results = [await run_mode(m, calls, args) for m in args.modes.split(",")]
    reset_state()
    print(
        f"{args.calls} calls, {args.agents} agents, agent 0 makes {args.hot:.0%}, "
        f"concurrency {args.concurrency}, 2 llama-server replicas x 2 slots"
    )
    print(
        f"{'mode':<24} {'cached share':>12} {'p50 s':>7} {'p99 s':>7} {'mean s':>7} "
        f"{'wall s':>7}  hot agent on"
    )
    for r in results:
        lat = sorted(r.latencies)
        p99 = lat[int(0.99 * (len(lat) - 1))]
        share = r.cached_tokens / max(1, r.prompt_tokens)
        print(
            f"{r.mode:<24} {share:>12.1%} {statistics.median(lat):>7.2f} {p99:>7.2f} "
            f"{statistics.fmean(lat):>7.2f} {r.wall_s:>7.1f}  {dict(sorted(r.hot_on.items()))}"
        )


if __name__ == "__main__":
    asyncio.run(main())
