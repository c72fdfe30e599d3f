"""The cost of LangChain's layer: ``ChatAgentflow.invoke`` vs ``af.complete`` on the same
loopback server, same prompt, side by side in one run (interleaved rounds, medians).

Both run inside the same ``af.run`` with no step; ``ChatAgentflow.invoke`` adds LangChain's
message conversion, callbacks and ``AIMessage`` building on top of ``af.complete``.

    python benchmarks/bench_langchain.py [--calls 20] [--rounds 15]
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before litellm is imported

import argparse
import statistics
import time
from collections.abc import Callable

from _tracing import install_drop_provider

provider = install_drop_provider()

import agentflow as af  # noqa: E402  # after the provider, as an application would
from agentflow.langchain import ChatAgentflow  # noqa: E402
from agentflow.testing import LoopbackServer, Reply  # noqa: E402

PROMPT = "What is the capital of France?"


def _round(fn: Callable[[], object], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20, help="calls per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with LoopbackServer(name="bench") as srv:
        srv.default = Reply("Paris.", prompt_tokens=12, completion_tokens=2)
        endpoint = af.Endpoint(model="openai/m", api_base=srv.base_url, api_key="sk-bench")
        af.configure(zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=[endpoint])]))
        model = ChatAgentflow(tier="small")
        messages = [{"role": "user", "content": PROMPT}]
        variants: dict[str, Callable[[], object]] = {
            "af.complete": lambda: af.complete(messages),
            "ChatAgentflow.invoke": lambda: model.invoke(PROMPT),
        }
        with af.run("bench"):
            for fn in variants.values():  # warm: imports, clients, pools
                _round(fn, 3)
            samples: dict[str, list[float]] = {name: [] for name in variants}
            for r in range(args.rounds):
                order = list(variants) if r % 2 == 0 else list(reversed(variants))
                for name in order:
                    samples[name].append(_round(variants[name], args.calls))
    base = statistics.median(samples["af.complete"])
    print(f"{args.rounds} rounds x {args.calls} calls, medians of the round means")
    print(f"{'variant':<24} {'ms/call':>9} {'ratio':>7}")
    for name, values in samples.items():
        value = statistics.median(values)
        print(f"{name:<24} {value * 1e3:9.3f} {value / base:6.2f}x")
    added = statistics.median(samples["ChatAgentflow.invoke"]) - base
    print(f"added by LangChain's layer: {added * 1e3:.3f} ms per call")
    provider.shutdown()


if __name__ == "__main__":
    main()
