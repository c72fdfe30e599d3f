"""Overhead of tracing a model call: a decorated step with one ``af.complete`` call vs. the
same call made with ``litellm.completion`` directly, both against a loopback server that
answers at once (``Reply(latency=0)``).

Tracing is on for agentflow: an SDK TracerProvider with a BatchSpanProcessor and an
exporter that drops spans (so the cost of building, attributing and queueing the run's
step and LLM spans is measured, not the cost of a backend). The two are measured in
interleaved rounds in one process; medians per call are printed, and the ratio.

    python benchmarks/bench_tracing_overhead.py [--calls 100] [--rounds 15]
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

import litellm  # noqa: E402

import agentflow as af  # noqa: E402  # after the provider, as an application would
from agentflow.pipeline.call import litellm as configured_litellm  # noqa: E402
from agentflow.testing import LoopbackServer, Reply  # noqa: E402
from budgets import TokenPricing  # noqa: E402

MODEL = "openai/m"
KEY = "sk-bench"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def per_call(fn: Callable[[], object], calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    with LoopbackServer(name="bench") as srv:
        srv.default = Reply("Paris", prompt_tokens=12, completion_tokens=2, latency=0)
        pricing = TokenPricing(input_per_mtok=1, output_per_mtok=2)
        endpoint = af.Endpoint(model=MODEL, api_base=srv.base_url, api_key=KEY, pricing=pricing)
        af.configure(zoo=af.ModelZoo(tiers=[af.Tier("specialist", endpoints=[endpoint])]))

        @af.step(kind="tool", name="answer")
        def step() -> str:
            return af.complete(messages=MESSAGES).text

        # the same module settings (telemetry and debug output off) and request as agentflow
        assert configured_litellm() is litellm

        def direct() -> str:
            response = litellm.completion(
                model=MODEL,
                api_base=srv.base_url,
                api_key=KEY,
                timeout=endpoint.timeout,
                messages=MESSAGES,
                num_retries=0,
                max_retries=0,
            )
            return str(response.choices[0].message.content)

        assert step() == direct() == "Paris"
        per_call(step, 20)  # warm up both paths (imports, connection pools)
        per_call(direct, 20)
        rows: dict[str, list[float]] = {"litellm.completion": [], "af.step + af.complete": []}
        runs = {"litellm.completion": direct, "af.step + af.complete": step}
        for n in range(args.rounds):
            order = list(runs) if n % 2 == 0 else list(reversed(runs))  # neither always first
            for name in order:
                rows[name].append(per_call(runs[name], args.calls))

    med = {name: statistics.median(values) for name, values in rows.items()}
    for name, value in med.items():
        print(f"{name:<24} {value * 1e3:8.3f} ms per call")
    base, ours = med["litellm.completion"], med["af.step + af.complete"]
    print(f"added per call:          {(ours - base) * 1e3:8.3f} ms")
    print(f"ratio agentflow / litellm: {ours / base:.2f}x")
    provider.shutdown()


if __name__ == "__main__":
    main()
