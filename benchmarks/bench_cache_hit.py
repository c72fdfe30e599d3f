"""Exact-cache hit latency: agentflow's response cache vs. litellm's own cache, on the
same requests, side by side in one run.

Both caches are in memory: agentflow's ``cache_backend="memory"`` and litellm's
``Cache(type="local")`` (litellm 1.110 dropped ``Cache(type="disk")``; with
``--disk``, agentflow's diskcache store is measured against litellm's in-memory one). Each is
warmed with the same ``--requests`` distinct prompts (one call each reaches a loopback
server), then every prompt is asked again ``--rounds`` times, interleaving the two so
neither always runs first. Every measured call must be a hit (the loopback server
counts the requests that reach it). Printed: p50 and p99 per hit, and the ratios.

agentflow's hit is the whole pipeline: a decorated step, the canonical key, the lookup,
rebuilding the Completion, a cost-0 LLM span (to an SDK TracerProvider whose exporter
drops spans) and the run's accounting. litellm's is ``litellm.completion(...,
caching=True)`` with its logging callbacks off.

    python benchmarks/bench_cache_hit.py [--requests 200] [--rounds 5]

litellm's cache-hit path imports parts of its proxy (``fastapi``, ``soundfile``): install
them first (``pip install fastapi soundfile``); agentflow's path needs neither.
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before litellm is imported

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

from _tracing import install_drop_provider

provider = install_drop_provider()

import litellm  # noqa: E402
from litellm.caching.caching import Cache  # noqa: E402

import agentflow as af  # noqa: E402
from agentflow.testing import LoopbackServer, Reply  # noqa: E402
from budgets import TokenPricing  # noqa: E402

MODEL = "openai/m"
KEY = "sk-bench"
SYSTEM = "You are a concise assistant. Answer in one short sentence."


def messages(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Question {i}: what is {i} + {i}?"},
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn: Callable[[int], object], i: int) -> float:
    t = time.perf_counter()
    fn(i)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--disk", action="store_true", help="agentflow on its diskcache store")
    args = parser.parse_args()

    with (
        LoopbackServer(name="bench") as srv,
        tempfile.TemporaryDirectory(prefix="af-cache-") as af_dir,
    ):
        srv.default = Reply("An answer.", prompt_tokens=30, completion_tokens=4, latency=0)
        pricing = TokenPricing(input_per_mtok=1, output_per_mtok=2)
        endpoint = af.Endpoint(model=MODEL, api_base=srv.base_url, api_key=KEY, pricing=pricing)
        af.configure(
            zoo=af.ModelZoo(tiers=[af.Tier("specialist", endpoints=[endpoint])]),
            cache_dir=af_dir,
            cache_backend="disk" if args.disk else "memory",
        )

        @af.step(kind="tool", name="answer", cache="exact")
        def agentflow_call(i: int) -> str:
            completion = af.complete(messages=messages(i))
            return completion.text

        litellm.cache = Cache(type="local")

        def litellm_call(i: int) -> str:
            response = litellm.completion(
                model=MODEL,
                api_base=srv.base_url,
                api_key=KEY,
                messages=messages(i),
                caching=True,
                num_retries=0,
                max_retries=0,
            )
            return str(response.choices[0].message.content)

        calls = {
            f"agentflow ({'diskcache' if args.disk else 'memory'})": agentflow_call,
            'litellm Cache(type="local")': litellm_call,
        }
        for fn in calls.values():  # warm: one miss per request, each reaches the server
            for i in range(args.requests):
                fn(i)
        time.sleep(0.5)  # litellm writes its cache entries from a background thread
        reached = len([r for r in srv.requests if r.path.endswith("/chat/completions")])
        assert reached == 2 * args.requests, reached

        samples: dict[str, list[float]] = {name: [] for name in calls}
        for r in range(args.rounds):
            order = list(calls) if r % 2 == 0 else list(reversed(calls))
            for i in range(args.requests):
                for name in order:
                    samples[name].append(timed(calls[name], i))
        after = len([r for r in srv.requests if r.path.endswith("/chat/completions")])
        misses = after - reached

    print(
        f"{args.requests} distinct requests x {args.rounds} rounds of hits each; "
        f"requests that reached the server while measuring: {misses}"
    )
    print(f"{'cache':<28} {'p50':>10} {'p99':>10} {'mean':>10}")
    stats: dict[str, tuple[float, float]] = {}
    for name, values in samples.items():
        p50, p99 = pct(values, 0.50), pct(values, 0.99)
        stats[name] = (p50, p99)
        mean = statistics.fmean(values)
        print(f"{name:<28} {p50 * 1e3:8.3f}ms {p99 * 1e3:8.3f}ms {mean * 1e3:8.3f}ms")
    (a50, a99), (l50, l99) = stats.values()
    print(f"ratio agentflow / litellm: p50 {a50 / l50:.2f}x, p99 {a99 / l99:.2f}x")
    provider.shutdown()


if __name__ == "__main__":
    main()
